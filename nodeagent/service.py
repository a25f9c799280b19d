"""The agent process, wired: dataplane + controller stream + the agent's own servers.

    AgentService.start():
      dataplane.start()           host checks, backend, adopt the saved state (no write)
      saved state == kernel ?     -> the client starts from it (hello carries its digest,
                                     so an unchanged controller sends "in sync", no write)
      gRPC  :7702                 grpc.health.v1 + reflection + stockade.v1.AgentDebug
      HTTP  :7703                 /healthz (JSON), /metrics (Prometheus text)
      tasks                       client.run() (stream, reconnect), dataplane.run_periodic_reconcile()
    AgentService.stop():          bounded, in this order: stop the stream client, let an
                                  apply in progress finish, wait for the dataplane to be idle,
                                  cancel the reconcile loop, wait for the state file to be
                                  written, stop the servers.
                                  The kernel is never flushed or cleared (fail-static).

It does not parse flags (``nodeagent.main``) nor decide what to write
(``nodeagent.dataplane``) nor speak the stream protocol (``nodeagent.client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from nodeagent.client import AgentClient, ClientSettings
from stockade import __version__
from stockade.state import NodeState, StateError
from stockade.v1 import stockade_pb2_grpc
from stockade.wire import debug_codec, grpcutil
from stockade.wire.messages import HostCheck

if TYPE_CHECKING:
    from nodeagent.dataplane import DataplaneSettings

log = logging.getLogger("stockade.agent")

SERVICES = ("stockade.v1.AgentDebug",)


@dataclass
class AgentSettings:
    """Everything ``stockade agent`` takes from its flags (see ``nodeagent.main``)."""

    node: str
    controllers: list[str]
    grpc_listen: str = "0.0.0.0:7702"
    http_listen: str = "0.0.0.0:7703"
    dataplane: DataplaneSettings | None = None  # None: DataplaneSettings() (backend, reconcile period, state dir, ...)
    shutdown_timeout: float = 5.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    security: Any = None  # nodeagent.channel_auth.ChannelSecurity; None: plaintext, no token
    extra: dict[str, Any] = field(default_factory=dict)


class _AgentDebug(stockade_pb2_grpc.AgentDebugServicer):
    def __init__(self, svc: AgentService) -> None:
        self.svc = svc

    async def GetApplied(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return debug_codec.applied_to_pb(self.svc.applied())


class _Collector:
    """Agent metrics, read from the client and the dataplane at scrape time."""

    def __init__(self, svc: AgentService) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        c = self.svc.client
        dp = self.svc.dataplane.status() if self.svc.started else {}
        g = GaugeMetricFamily("stockade_agent_connected", "1 while the stream to a controller is open")
        g.add_metric([], 1.0 if c is not None and c.connected else 0.0)
        yield g
        g = GaugeMetricFamily("stockade_agent_applied_version", "Controller version of the enforced state")
        g.add_metric([], float(c.version if c is not None else 0))
        yield g
        g = GaugeMetricFamily("stockade_agent_last_apply_timestamp_seconds", "Unix time of the last apply")
        g.add_metric([], float(c.last_apply_unix if c is not None else 0.0))
        yield g
        for name, helptext, value in (
            ("stockade_agent_updates_applied", "Updates from the controller applied", c.applies if c else 0),
            ("stockade_agent_updates_rejected", "Updates rejected (bad input or kernel error)", c.rejects if c else 0),
            ("stockade_agent_connects", "Streams opened to a controller", c.connects if c else 0),
            ("stockade_agent_streams_expired", "Streams the controller ended for re-admission (token expiry, "
             "maximum stream age)", c.expired if c else 0),
            ("stockade_agent_kernel_writes", "Kernel-mutating commands run", dp.get("kernel_writes", 0)),
            ("stockade_agent_drift_repairs", "Objects repaired after drift", dp.get("drift_repairs", 0)),
        ):
            cm = CounterMetricFamily(name, helptext)
            cm.add_metric([], float(value))
            yield cm
        counts = (c.counts if c is not None else {}) or dp.get("counts", {})
        g = GaugeMetricFamily("stockade_agent_objects", "Objects enforced, by kind", labels=["kind"])
        for k, v in sorted(counts.items()):
            g.add_metric([k], float(v))
        yield g


class AgentService:
    """See the module docstring.  ``kernel``: the command runner (the real
    ``SubprocessKernel`` or ``FakeKernel``); ``dataplane``: injected in tests."""

    def __init__(self, settings: AgentSettings, kernel: Any = None, dataplane: Any = None,
                 clock: Callable[[], float] = time.time) -> None:
        if not settings.node:
            raise ValueError("agent: node name is empty (--node-name or NODE_NAME)")
        if not settings.controllers:
            raise ValueError("agent: no controller address (--controller HOST:PORT)")
        self.settings = settings
        if dataplane is None:
            from nodeagent.dataplane import Dataplane, DataplaneSettings

            if kernel is None:
                from nodeagent.kernel import SubprocessKernel

                kernel = SubprocessKernel()
            dataplane = Dataplane(kernel, settings.dataplane or DataplaneSettings())
        self.dataplane = dataplane
        self.client: AgentClient | None = None
        self.started = False
        self.start_report: dict[str, Any] = {}
        self.grpc_port = 0
        self.http_port = 0
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.registry.register(_Collector(self))
        self._tasks: list[asyncio.Task[None]] = []
        self._grpc: grpc.aio.Server | None = None
        self._health: grpcutil.Health | None = None
        self._http: web.AppRunner | None = None
        self.clock = clock

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        s = self.settings
        self.start_report = await self.dataplane.start()
        self.started = True
        initial = self._initial_state()
        checks = tuple(HostCheck(c["name"], c["ok"], c.get("detail", ""))
                       for c in self.start_report.get("checks", ()))
        self.client = AgentClient(
            ClientSettings(s.node, s.controllers, __version__, backoff_initial=s.backoff_initial,
                           backoff_max=s.backoff_max, security=s.security),
            self.dataplane, host_checks=lambda: checks,
            drift_repairs=lambda: int(self.dataplane.status().get("drift_repairs", 0)),
            initial=initial)
        await self._start_grpc()
        await self._start_http()
        self._tasks = [
            asyncio.create_task(self.client.run(), name="agent-stream"),
            asyncio.create_task(self.dataplane.run_periodic_reconcile(), name="agent-reconcile"),
        ]
        log.info("agent %s started: gRPC %s (port %d), HTTP %s (port %d), controllers %s; %s",
                 s.node, s.grpc_listen, self.grpc_port, s.http_listen, self.http_port,
                 ",".join(s.controllers), self.start_report.get("adopted", ""))

    def _initial_state(self) -> tuple[NodeState, int, str] | None:
        """The saved state, when the dataplane confirmed the kernel holds it."""
        applied = self.dataplane.applied_digest
        if not applied:
            return None
        from nodeagent import state_store
        from stockade.wire.digest import DigestCache

        try:
            saved = state_store.load(self.dataplane.settings.state_dir)
        except StateError as e:
            log.warning("saved state unusable: %s", e)
            return None
        if saved is None or saved.node != self.settings.node:
            return None
        d = DigestCache().digest(saved)
        return (saved, 0, d) if d == applied else None

    async def _start_grpc(self) -> None:
        # SO_REUSEPORT on both ports: a rolling update with maxSurge starts the
        # new agent beside the old one on the host network (deploy/).
        server = grpcutil.new_server(reuse_port=True)
        stockade_pb2_grpc.add_AgentDebugServicer_to_server(  # type: ignore[no-untyped-call]
            _AgentDebug(self), server)
        self._health = grpcutil.Health(server, SERVICES)
        grpcutil.enable_reflection(server, SERVICES)
        self.grpc_port = server.add_insecure_port(grpcutil.bind_address(self.settings.grpc_listen))
        if self.grpc_port == 0:
            raise OSError(f"agent gRPC: cannot listen on {self.settings.grpc_listen}")
        await self._health.set_serving(True)  # liveness: the agent enforces even when disconnected
        await server.start()
        self._grpc = server

    async def _start_http(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        host, port = grpcutil.parse_hostport(self.settings.http_listen)
        site = web.TCPSite(runner, host, port, reuse_port=True)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.http_port = sockets[0].getsockname()[1] if sockets else port
        self._http = runner

    async def stop(self) -> None:
        """Bounded graceful stop; never touches the kernel."""
        t = self.settings.shutdown_timeout
        errors: list[str] = []

        async def step(name: str, coro: Any, timeout: float) -> None:
            try:
                await asyncio.wait_for(coro, timeout)
            except TimeoutError:
                errors.append(f"{name}: timed out after {timeout}s")
            except Exception as e:
                errors.append(f"{name}: {type(e).__name__}: {e}")

        if self.client is not None:
            self.client.stop()
            await step("apply in progress", self.client.drain(), t)
        stream = [x for x in self._tasks if x.get_name() == "agent-stream"]
        await step("stream", _cancel(stream), 2.0)
        await step("dataplane idle", self._quiesce_and_cancel([x for x in self._tasks if x not in stream]), t)
        flush = getattr(self.dataplane, "flush_persisted", None)
        if flush is not None:
            await step("state file", flush(), t)
        if self._health is not None:
            await step("health", self._health.shutting_down(), 1.0)
        if self._grpc is not None:
            await step("grpc", grpcutil.stop_server(self._grpc, 1.0), 7.0)
        if self._http is not None:
            await step("http", self._http.cleanup(), 3.0)
        for e in errors:
            log.warning("shutdown: %s", e)
        log.info("agent %s stopped; the kernel keeps enforcing %s", self.settings.node,
                 f"version {self.client.version} ({self.client.digest[:12]})"
                 if self.client is not None and self.client.state is not None else "what it had")

    async def _quiesce_and_cancel(self, tasks: list[asyncio.Task[None]]) -> None:
        """Cancel the reconcile loop only while the dataplane is between
        operations (its lock held by us), so no restore is cut in half."""
        lock = getattr(self.dataplane, "_lock", None)
        if isinstance(lock, asyncio.Lock):
            async with lock:
                await _cancel(tasks)
        else:
            await _cancel(tasks)

    async def wait(self) -> asyncio.Task[None]:
        """The first long-lived task that ended (only on a crash)."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done))

    # ---------------------------------------------------------------- status

    def applied(self) -> dict[str, Any]:
        c = self.client
        dp = self.dataplane.status() if self.started else {}
        return {
            "node": self.settings.node,
            "digest": c.digest if c is not None else dp.get("applied_digest", ""),
            "version": c.version if c is not None else 0,
            "counts": (c.counts if c is not None and c.counts else dp.get("counts", {})),
            "connected": bool(c and c.connected),
            "controller": c.controller if c is not None else "",
            "last_error": (c.last_error if c is not None else "") or dp.get("last_error", ""),
            "last_apply_unix": c.last_apply_unix if c is not None else 0.0,
            "dataplane": dp,
        }

    async def _healthz(self, request: web.Request) -> web.Response:
        body = self.applied()
        body.pop("dataplane", None)
        body["status"] = "ok" if self.started else "starting"
        return web.Response(text=json.dumps(body, sort_keys=True, default=str) + "\n",
                            content_type="application/json", status=200 if self.started else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
