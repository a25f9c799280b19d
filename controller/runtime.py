"""The controller pipeline, wired in one place.

Data flow (one process, one event loop)::

    kube-apiserver
       │ list + watch, per kind                      controller/watch.py
       ▼
    Watcher(Namespace) Watcher(Pod) Watcher(Node) Watcher(NetworkPolicy)
       │  raw JSON -> slim record (controller/parse.py) at the door;
       │  no-ops dropped; relists reconciled into real differences
       │  sink(): enqueue [Change | Listed, ...]          (never blocks)
       ▼
    asyncio.Queue ──► Writer task  (the ONLY code that touches the Engine)
                        │ drain the queue (coalesce a burst into one batch)
                        │ apply: engine.set_*/remove_*   (controller/engine.py)
                        │ before every kind is Listed: apply only, send nothing
                        │ then: engine.flush() -> {node: NodeState changed}
                        ▼
                      Distributor.publish(node, state)  (controller/distributor.py)
                        │ versions, digests, deltas, per-agent coalescing
                        ▼
                      gRPC stream per agent (controller/grpc_server.py, :7700)
                        TLS: controller/serving_tls.py (own CA shared through Secret
                        stockade-ca, bundle in ConfigMap stockade-ca; or --tls-*-file);
                        door: the stream's token -> TokenReview -> bound pod -> its node
                        must be the node the hello claims (controller/agent_auth.py)

    readers (same loop, never write):  status_web (:7701 page, JSON, /metrics,
    /healthz, /readyz) and the gRPC debug RPCs read through :class:`Controller`
    (``status()``, ``node_state_json()``, ``policy()``, ``explain()``).

Readiness: the writer flips to ready only after a :class:`~controller.watch.Listed`
of every kind has been applied; then it flushes everything, publishes it,
and calls ``distributor.set_ready(True)`` (gRPC health SERVING, /readyz 200).
A partial view never reaches an agent.

Shutdown order (:meth:`Controller.stop`, each step bounded by
``ShutdownSettings``): 1. watches cancelled (streams closed); 2. the writer
cancelled (a batch in hand is finished first: apply+publish is synchronous);
3. HTTP stopped; 4. gRPC stopped with a grace period for agents' streams;
5. the Kubernetes client closed.  Agents keep enforcing their last state
(fail-static), so stopping the controller never changes a kernel.

This module wires and sequences; it computes nothing itself (the engine
does), renders nothing (status_web does) and speaks no protobuf.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from controller import heap, metrics, oracle
from controller.model import Namespace, NetworkPolicy, Node, Pod
from controller.settings import Settings, check_compile
from controller.watch import KINDS, Change, Listed, Message, Projector, Watcher, api_call
from stockade.state import NodeState

if TYPE_CHECKING:
    from controller.agent_auth import GrpcGuard
    from controller.distributor import Distributor
    from controller.engine import PolicySummary
    from controller.grpc_server import ControllerGrpcServer
    from controller.serving_tls import ServingTls
    from controller.status_web import StatusServer

log = logging.getLogger("stockade.controller")
T = TypeVar("T")


class EngineLike(Protocol):
    """What the writer needs of ``controller.engine.Engine``."""

    def set_namespace(self, ns: Namespace) -> None: ...
    def remove_namespace(self, name: str) -> None: ...
    def set_pod(self, pod: Pod) -> None: ...
    def remove_pod(self, key: str) -> None: ...
    def set_node(self, node: Node) -> None: ...
    def remove_node(self, name: str) -> None: ...
    def set_policy(self, p: NetworkPolicy) -> None: ...
    def set_invalid_policy(self, key: str, errors: list[str]) -> None: ...
    def remove_policy(self, key: str) -> None: ...
    def flush(self) -> dict[str, NodeState]: ...
    def policy_info(self, key: str) -> tuple[list[str], list[str], list[str]]: ...
    def policies(self) -> list[PolicySummary]: ...
    def stats(self) -> dict[str, int]: ...


@dataclass(frozen=True, slots=True)
class InvalidPolicy:
    """The projection of a NetworkPolicy that failed validation: kept (and
    reported) instead of the policy; never enforced."""

    key: str
    errors: tuple[str, ...]


def projectors() -> dict[str, Projector]:
    """Raw JSON -> record, per kind (``controller.parse``)."""
    from controller import parse

    def policy(obj: Mapping[str, Any]) -> object:
        try:
            return parse.parse_policy(dict(obj))
        except parse.PolicyInvalid as e:
            return InvalidPolicy(str(e.key), tuple(str(x) for x in e.errors))

    return {
        "Namespace": lambda o: parse.parse_namespace(dict(o)),
        "Pod": lambda o: parse.parse_pod(dict(o)),
        "Node": lambda o: parse.parse_node(dict(o)),
        "NetworkPolicy": policy,
    }


def _expect(c: Change, cls: type[T]) -> T:
    """The change's record, which must be a ``cls`` (a projector bug otherwise)."""
    if not isinstance(c.value, cls):
        raise TypeError(f"{c.kind} {c.key}: projected to {type(c.value).__name__}, expected {cls.__name__}")
    return c.value


class Writer:
    """The single writer: owns the engine, applies batches, publishes.

    ``listed`` holds the kinds whose first list has been applied;
    ``ready`` turns True once it holds every kind and the first full
    publish is done.  ``removed_nodes`` are nodes deleted since the last
    publish (the distributor is told after the engine flushed).
    """

    def __init__(self, engine: EngineLike, distributor: Distributor, settings: Settings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.distributor = distributor
        self.queue: asyncio.Queue[Sequence[Message]] = asyncio.Queue()
        self._s = settings.runtime
        self._clock = clock
        self.listed: set[str] = set()
        self.ready = False
        self.ready_event = asyncio.Event()
        self.ready_note = ""  # appended to the ready log line (addresses)
        self.batches = 0
        self.changes = 0
        self.published = 0
        self.last_publish: float | None = None
        self.invalid: dict[str, tuple[str, ...]] = {}
        self._removed_nodes: set[str] = set()
        # The same records as the engine, indexed for the oracle (explain).
        self.cluster = oracle.Cluster()

    def sink(self, msgs: Sequence[Message]) -> None:
        """What watchers call: enqueue, never block."""
        self.queue.put_nowait(msgs)

    async def run(self) -> None:
        while True:
            first = await self.queue.get()
            if self._s.batch_window > 0:
                await asyncio.sleep(self._s.batch_window)
            batch = [first]
            n = len(first)
            while n < self._s.max_batch and not self.queue.empty():
                msgs = self.queue.get_nowait()
                batch.append(msgs)
                n += len(msgs)
            self.apply(batch)

    def apply(self, batch: Sequence[Sequence[Message]]) -> None:
        """Apply one batch to the engine, then publish what changed (pure
        of awaits: nothing else runs in between, so readers never see half
        a batch)."""
        received: list[float] = []
        for msgs in batch:
            for m in msgs:
                if isinstance(m, Listed):
                    self.listed.add(m.kind)
                    continue
                self._apply_change(m)
                received.append(m.received)
        self.batches += 1
        self.changes += len(received)
        metrics.BATCH_SIZE.observe(len(received))
        metrics.INVALID_POLICIES.set(len(self.invalid))
        if not self.ready:
            if self.listed.issuperset(KINDS):
                self._become_ready()
            return
        if self._publish():
            now = self._clock()
            for t in received:
                metrics.EVENT_TO_SEND.observe(max(0.0, now - t))

    def _apply_change(self, c: Change) -> None:
        e, cl = self.engine, self.cluster
        v = c.value
        if c.kind == "Namespace":
            if v is None:
                e.remove_namespace(c.key)
                cl.remove_namespace(c.key)
            else:
                ns = _expect(c, Namespace)
                e.set_namespace(ns)
                cl.set_namespace(ns)
        elif c.kind == "Pod":
            if v is None:
                e.remove_pod(c.key)
                cl.remove_pod(c.key)
            else:
                pod = _expect(c, Pod)
                e.set_pod(pod)
                cl.set_pod(pod)
        elif c.kind == "Node":
            if v is None:
                e.remove_node(c.key)
                cl.remove_node(c.key)
                self._removed_nodes.add(c.key)
            else:
                node = _expect(c, Node)
                e.set_node(node)
                cl.set_node(node)
                self._removed_nodes.discard(c.key)
        else:
            self.invalid.pop(c.key, None)
            if v is None:
                e.remove_policy(c.key)
                cl.remove_policy(c.key)
            elif isinstance(v, InvalidPolicy):
                self.invalid[c.key] = v.errors
                log.error("NetworkPolicy %s is invalid and not enforced: %s", c.key, "; ".join(v.errors))
                e.set_invalid_policy(c.key, list(v.errors))
                cl.remove_policy(c.key)
            else:
                pol = _expect(c, NetworkPolicy)
                e.set_policy(pol)
                cl.set_policy(pol)

    def _publish(self) -> bool:
        states = self.engine.flush()
        for node in sorted(states):
            if node in self._removed_nodes:
                continue
            self.distributor.publish(node, states[node])
        for node in sorted(self._removed_nodes):
            self.distributor.remove_node(node)
        touched = bool(states) or bool(self._removed_nodes)
        self._removed_nodes.clear()
        if touched:
            self.published += len(states)
            self.last_publish = time.time()
        return touched

    def _become_ready(self) -> None:
        self._publish()
        self.ready = True
        self.distributor.set_ready(True)
        metrics.READY.set(1)
        self.ready_event.set()
        st = self.engine.stats()
        log.info("controller READY%s: every kind listed; %d node states published (%s)", self.ready_note,
                 self.published, ", ".join(f"{k}={st[k]}" for k in ("nodes", "namespaces", "pods", "policies",
                                                                       "invalid_policies") if k in st))
        if self._s.heap_settle_seconds > 0:
            heap.settle()  # the initial model is built: keep full collections off it


async def make_api_client(settings: Settings) -> Any:
    """A kubernetes-asyncio ApiClient from ``--kubeconfig`` or the in-cluster config."""
    from kubernetes_asyncio import client, config

    cfg = client.Configuration()
    if settings.kubeconfig:
        try:
            await config.load_kube_config(config_file=settings.kubeconfig, client_configuration=cfg)
        except Exception as e:
            msg = " ".join(str(e).split())
            raise RuntimeError(f"--kubeconfig {settings.kubeconfig}: not usable: {type(e).__name__}: {msg}") from e
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    else:
        raise RuntimeError("no --kubeconfig and not in a cluster (KUBERNETES_SERVICE_HOST unset)")
    return client.ApiClient(configuration=cfg)


class Controller:
    """The controller process: builds every part, runs them, stops them in order.

    Parts (created in :meth:`start`, in this order): Kubernetes client,
    engine, distributor, writer task, gRPC server, HTTP server, one watch
    task per kind.  ``tasks`` are the root tasks; if one of them dies the
    process must exit (:meth:`wait` returns it).
    """

    def __init__(self, settings: Settings, *, api_client: Any = None, engine: EngineLike | None = None) -> None:
        self.settings = settings
        self._api_client = api_client
        self._own_client = api_client is None
        self._engine = engine
        self.started_at = time.time()
        self.watchers: dict[str, Watcher] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.writer: Writer | None = None
        self.distributor: Distributor | None = None
        self.http: StatusServer | None = None
        self.grpc: ControllerGrpcServer | None = None
        self.grpc_port = 0
        self.http_port = 0
        self.tls: ServingTls | None = None  # None: plaintext gRPC (--insecure-grpc)
        self.guard: GrpcGuard | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        from controller.distributor import Distributor
        from controller.engine import Engine
        from controller.status_web import StatusServer

        s = self.settings
        if self._engine is None:
            check_compile(s.compile)  # before anything starts: states every agent refuses help no one
        if self._api_client is None:
            self._api_client = await make_api_client(s)
        engine: EngineLike = self._engine if self._engine is not None else Engine(s.compile)
        dist = self.distributor = Distributor(s.replica_id)
        self.writer = Writer(engine, dist, s)
        self.tasks.append(asyncio.create_task(self.writer.run(), name="stockade-writer"))
        if s.runtime.gc_young_threshold > 0:
            heap.young_threshold(s.runtime.gc_young_threshold)
        if s.runtime.heap_settle_seconds > 0:
            writer = self.writer
            self.tasks.append(asyncio.create_task(
                heap.maintain(s.runtime.heap_settle_seconds, lambda: writer.ready and writer.queue.empty(),
                              s.runtime.heap_freeze_seconds, chores=dist.sweep_if_grown),
                name="stockade-heap"))
        self.tls, self.guard = await self._channel_security()
        try:
            self.grpc = await self._start_grpc(dist)
        except OSError as e:
            raise OSError(f"--grpc-listen {s.grpc_host}:{s.grpc_port}: {e}") from e
        self.http = StatusServer(self, s.http_host, s.http_port)
        try:
            self.http_port = await self.http.start()
        except OSError as e:
            raise OSError(f"--http-listen {s.http_host}:{s.http_port}: {e}") from e
        proj = projectors()
        for kind in KINDS:
            w = Watcher(kind, api_call(self._api_client, kind), proj[kind], self.writer.sink, s.watch)
            self.watchers[kind] = w
            self.tasks.append(asyncio.create_task(w.run(), name=f"stockade-watch-{kind}"))
        self.writer.ready_note = f" (replica {s.replica_id}, gRPC {s.grpc_host}:{self.grpc_port}, HTTP {s.http_host}:{self.http_port})"
        log.info("controller %s started: gRPC %s:%d, HTTP %s:%d; listing %s",
                 s.replica_id, s.grpc_host, self.grpc_port, s.http_host, self.http_port, ", ".join(KINDS))

    async def _channel_security(self) -> tuple[ServingTls | None, GrpcGuard]:
        """TLS material (``--tls-mode``) and the door of the gRPC port (``--auth``, ``--debug-rpcs``)."""
        from controller import serving_tls
        from controller.agent_auth import AgentAuthenticator, GrpcGuard
        from controller.node_binding import Expectation

        sec = self.settings.security
        tls = await serving_tls.prepare(sec, self._api_client)
        auth = None
        if sec.auth == "tokenreview":
            auth = AgentAuthenticator(self._api_client,
                                      Expectation(sec.namespace, sec.agent_service_account, sec.audience),
                                      cache_ttl=sec.review_cache_seconds, cache_size=sec.review_cache_size)
        else:
            log.warning("agent authentication is OFF (--auth none): any client may claim to be any node")
        log.info("gRPC channel: TLS %s, agents authenticated by %s (ServiceAccount %s/%s, audience %s), "
                 "debug RPCs %s, streams end after %s%s", sec.tls_mode, sec.auth, sec.namespace,
                 sec.agent_service_account, sec.audience, sec.debug_rpcs,
                 f"{sec.max_stream_age:g}s" if sec.max_stream_age > 0 else "no age limit",
                 " or at the token's expiry" if sec.auth == "tokenreview" else "")
        return tls, GrpcGuard(auth, sec.debug_rpcs)

    def channel_status(self) -> dict[str, Any]:
        """The agent channel's settings and certificate, for the status JSON."""
        sec = self.settings.security
        out: dict[str, Any] = {"tls": sec.tls_mode, "auth": sec.auth, "debug_rpcs": sec.debug_rpcs,
                               "namespace": sec.namespace, "max_stream_age": sec.max_stream_age}
        if self.tls is not None:
            i = self.tls.info
            out["certificate"] = {"source": self.tls.source, "names": [*i.dns_names, *i.ip_addresses],
                                  "not_after": i.not_after.isoformat()}
        auth = self.guard.auth if self.guard is not None else None
        if auth is not None:
            out["review_cache"] = {"entries": len(auth.cache), "hits": auth.cache.hits, "misses": auth.cache.misses}
        return out

    async def _start_grpc(self, dist: Distributor) -> ControllerGrpcServer:
        from controller import grpc_server, serving_tls
        from controller.stream_lifetime import StreamLifetime

        host = self.settings.grpc_host
        host = f"[{host}]" if ":" in host else host
        creds = serving_tls.server_credentials(self.tls) if self.tls is not None else None
        sec = self.settings.security
        lifetime = StreamLifetime(sec.max_stream_age, sec.min_stream_age, sec.stream_age_jitter)
        server = grpc_server.ControllerGrpcServer(dist, explain=self,
                                                  listen=f"{host}:{self.settings.grpc_port}",
                                                  credentials=creds, guard=self.guard, lifetime=lifetime)
        self.grpc_port = await server.start()
        return server

    async def wait(self) -> asyncio.Task[None]:
        """Return the first root task that ended (only on failure: they run forever)."""
        done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done))

    async def stop(self) -> None:
        """Stop in the documented order; every step bounded; errors gathered and logged."""
        sd = self.settings.shutdown
        errors: list[str] = []

        async def step(name: str, coro: Any, timeout: float) -> None:
            try:
                async with asyncio.timeout(timeout):
                    await coro
            except TimeoutError:
                errors.append(f"{name}: timed out after {timeout}s")
            except Exception as e:
                errors.append(f"{name}: {type(e).__name__}: {e}")

        watch_tasks = [t for t in self.tasks if t.get_name().startswith("stockade-watch-")]
        for w in self.watchers.values():
            w.stop()
        await step("watches", _cancel(watch_tasks), sd.watches)
        await step("writer", _cancel([t for t in self.tasks if t not in watch_tasks]), sd.writer)
        if self.http is not None:
            await step("http", self.http.stop(), sd.http)
        if self.grpc is not None:
            await step("grpc", self.grpc.stop(sd.grpc_grace), sd.grpc_grace + 1.0)
        if self._own_client and self._api_client is not None:
            await step("kubernetes client", self._api_client.close(), 2.0)
        for e in errors:
            log.warning("shutdown: %s", e)
        log.info("controller %s stopped", self.settings.replica_id)

    # ------------------------------------------------------------ readers

    def is_ready(self) -> bool:
        return self.writer is not None and self.writer.ready

    def _cached(self, kind: str, key: str) -> object | None:
        w = self.watchers.get(kind)
        c = None if w is None else w.cache.get(key)
        return None if c is None else c.value

    def _count(self, kind: str) -> int:
        w = self.watchers.get(kind)
        return 0 if w is None else len(w.cache)

    def status(self) -> dict[str, Any]:
        """Everything the status page shows, as JSON.  Cost is O(nodes +
        policies): per-policy member lists are only in :meth:`policy`."""
        assert self.writer is not None and self.distributor is not None, "status() before start()"
        distributor = self.distributor
        dist = {n["node"]: n for n in distributor.nodes_status()}
        node_w = self.watchers.get("Node")
        in_cluster = set(node_w.cache) if node_w is not None else set()
        nodes = []
        for name in sorted(set(dist) | in_cluster):
            row = dict(dist.get(name) or {"node": name, "connected": False, "replica": "",
                                          "desired_version": 0, "applied_version": 0, "lag": None,
                                          "in_sync": False, "last_apply_unix": 0.0, "last_error": "",
                                          "drift_repairs": 0})
            row["in_cluster"] = name in in_cluster
            nodes.append(row)
        policies = [{"key": p.key, "valid": p.valid, "errors": list(p.errors),
                     "pods_selected": p.selected, "nodes_spanned": p.nodes}
                    for p in self.writer.engine.policies()]
        invalid = sum(1 for p in policies if not p["valid"])
        return {
            "replica": self.settings.replica_id,
            "ready": self.is_ready(),
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "totals": {
                "nodes": len(in_cluster),
                "agents_connected": sum(1 for n in nodes if n.get("connected")),
                "agents_in_sync": sum(1 for n in nodes if n.get("in_sync")),
                "namespaces": self._count("Namespace"),
                "pods": self._count("Pod"),
                "policies": len(policies),
                "invalid_policies": invalid,
            },
            "nodes": nodes,
            "policies": policies,
            "watches": [w.status().to_json() for w in self.watchers.values()],
            "writer": {"batches": self.writer.batches, "changes": self.writer.changes,
                       "published": self.writer.published, "last_publish_unix": self.writer.last_publish,
                       "queued": self.writer.queue.qsize()},
            "distributor": distributor.stats(),
            "channel": self.channel_status(),
        }

    def node_state_json(self, node: str) -> dict[str, Any] | None:
        from controller.status_web import node_state_json

        d = self.distributor.desired(node) if self.distributor is not None else None
        if d is None:
            return None
        state, version, _ = d
        return node_state_json(state, version)

    def policy(self, key: str) -> dict[str, Any] | None:
        """One policy: validation errors, or the pods it selects and the nodes it spans."""
        v = self._cached("NetworkPolicy", key)
        if v is None:
            return None
        if isinstance(v, InvalidPolicy):
            return {"key": key, "valid": False, "errors": list(v.errors)}
        assert self.writer is not None
        try:
            selected, nodes, errors = self.writer.engine.policy_info(key)
        except KeyError:  # listed but not yet applied by the writer
            return {"key": key, "valid": True, "errors": [], "pending": True}
        return {"key": key, "valid": not errors, "errors": list(errors), "pods_selected": len(selected),
                "selected_pods": list(selected), "nodes": list(nodes)}

    def explain(self, src: str, dst: str, port: int, protocol: str) -> dict[str, Any]:
        from controller.status_web import ExplainError

        if self.writer is None or not self.writer.ready:
            raise ExplainError("controller not ready: the cluster has not been listed yet")
        proto: Any = protocol
        try:
            d = oracle.decide(self.writer.cluster, src, dst, port, proto)
        except oracle.OracleError as e:
            raise ExplainError(str(e)) from None
        out = d.to_json()
        out["reasons"] = d.reasons()
        out["summary"] = d.summary()
        return out


async def _cancel(tasks: Sequence[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for t, r in zip(tasks, results, strict=True):
        if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
            log.warning("task %s ended with %s: %s", t.get_name(), type(r).__name__, r)
