"""Wire benchmark: one controller, many simulated agents, end to end from the API emulator.

    python benchmarks/wire_bench.py [--nodes 1000] [--pods 30000] [--policies 3000]
                                    [--namespaces 100] [--workers 4] [--changes 200] [--seed 1]
    python benchmarks/wire_bench.py --fanout-only [same options]

Default mode (end to end).  Processes, all on 127.0.0.1 of this machine:

* the Kubernetes API emulator (``stockade.kubeemu``; this file run with
  ``--emulator``), its store preloaded through its Python API (no HTTP)
  with the synthetic cluster as Kubernetes JSON: Nodes (podCIDRs,
  InternalIP), Namespaces (labels), Pods (nodeName, Running, podIP/podIPs,
  labels) and NetworkPolicies that ``controller.parse`` turns into exactly
  the generator's records (checked before the run);
* the real controller, ``python -m stockade controller --insecure-grpc
  --auth none``, listing and watching the emulator like in a cluster;
* ``--workers`` worker processes hosting the agents: real
  ``nodeagent.client.AgentClient`` instances (snapshot/delta reassembly,
  validation, digest check, ack) applying to an in-memory dataplane; every
  successful ack is reported as a line on the worker's stdout (node,
  version, applied digest, ``time.monotonic()`` when the ack was handed to
  gRPC: CLOCK_MONOTONIC is system-wide, so comparable across processes);
* this process: a *mirror* ``controller.engine.Engine`` fed the same
  records.  For each change it updates the mirror first, so it knows which
  nodes must change and to which digest before the write; then it records
  t0, writes through the emulator's REST API (merge patch for pod
  relabels, create for pod adds, delete for pod deletes, replace for
  policy edits) and waits until every affected node's agent reported that
  digest.  A digest that never arrives means the controller computed
  something else than the mirror: the run fails, naming the node.

Cluster: pods spread at random over the nodes; 30 policies per namespace (a
default deny, same-namespace app-to-app rules, namespace-selector rules,
namespace+pod-selector rules, an egress ipBlock/DNS rule).  Changes, in a
fixed cycle of ten: six pod label flips, a pod add, a pod delete and two
policy edits (a port changed, a peer added/removed, the pod selector
changed, in turn).

Printed (``key value`` lines, then one ``JSON {...}`` line):
  * first sync: controller process start -> every agent acked the mirror's
    digest of its node (target <= 30 s); also start -> ``/readyz`` 200 and
    start -> all agents connected (``/metrics`` polled every 50 ms);
  * write_to_last_ack_ms: from just before the HTTP write at the emulator to
    the last affected agent's ack, p50/p99/max (target p99 <= 300 ms),
    overall and by change kind; changes that affect no node are counted
    apart (noop_changes); breakdown: the write's HTTP round trip
    (api_write_ms) and the controller's own watch-arrival -> publish
    (event_to_publish_ms, from its ``stockade_event_to_send_seconds``);
  * bytes sent per change (the controller's ``stockade_wire_bytes_sent``
    counter, scraped after each change's last ack) vs the affected nodes'
    snapshot bytes (``codec.encode_snapshot`` of the mirror's states)
    (target <= 1 % for single-pod changes);
  * controller RSS (VmRSS/VmHWM) and CPU seconds (utime+stime from /proc),
    at first sync and over the changes; emulator and workers' CPU; agent
    rejects.

``--fanout-only``: the distributor in isolation (as before the end-to-end
mode): ``Distributor`` + ``ControllerGrpcServer`` in this process, states
from an in-process engine, publish -> last ack; no emulator, no watch, no
writer task.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import dataclasses
import gc
import json
import logging
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.model import (  # noqa: E402
    SELECT_ALL,
    IPBlock,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Node,
    Peer,
    Pod,
    PolicyRule,
    PortSpec,
)
from nodeagent.client import AgentClient, ClientSettings  # noqa: E402
from stockade.state import NodeState, count  # noqa: E402
from stockade.wire.messages import Ack, Update  # noqa: E402

TIERS = ("web", "api", "db")
REPLICA = "bench"

# --------------------------------------------------------------------------- the synthetic cluster


def sel(**kw: str) -> LabelSelector:
    return LabelSelector(tuple(sorted(kw.items())))


def node_name(i: int) -> str:
    return f"node-{i:04d}"


def pod_ip(n: int, slot: int) -> str:
    return f"10.{64 + n // 256}.{n % 256}.{slot}"


def cluster(nodes: int, namespaces: int, pods: int, policies: int, seed: int) -> tuple[
        list[Namespace], list[Node], list[Pod], list[NetworkPolicy]]:
    """The records, in the parser's normal form (a namespace-selector peer
    carries the select-all pod selector), so that ``controller.parse`` of
    their JSON gives them back unchanged."""
    rng = random.Random(seed)
    ns_list = [Namespace(f"ns{i:03d}", {"team": f"t{i % 10}", "kubernetes.io/metadata.name": f"ns{i:03d}"})
               for i in range(namespaces)]
    node_list = [Node(node_name(i), (f"172.16.{i // 256}.{i % 256}",), (f"10.{64 + i // 256}.{i % 256}.0/24",))
                 for i in range(nodes)]
    used = [1] * nodes
    pod_list = []
    for k in range(pods):
        n = rng.randrange(nodes)
        used[n] += 1
        pod_list.append(Pod(ns_list[k % namespaces].name, f"p{k}",
                            {"app": f"a{rng.randrange(20)}", "tier": rng.choice(TIERS)},
                            node_name(n), (pod_ip(n, used[n]),)))
    pols = []
    per_ns = max(1, policies // namespaces)
    for i, ns in enumerate(ns_list):
        for j in range(per_ns):
            name, tgt = f"pol{j}", sel(app=f"a{j % 20}")
            if j == 0:
                pols.append(NetworkPolicy(ns.name, name, LabelSelector(), ("Ingress",)))
            elif j < 20:
                pols.append(NetworkPolicy(ns.name, name, tgt, ("Ingress",), ingress=(PolicyRule(
                    (Peer(pod_selector=sel(app=f"a{(j * 7) % 20}")),), (PortSpec("TCP", 8080),)),)))
            elif j < 25:
                pols.append(NetworkPolicy(ns.name, name, tgt, ("Ingress",), ingress=(PolicyRule(
                    (Peer(pod_selector=SELECT_ALL, namespace_selector=sel(team=f"t{j % 10}")),),
                    (PortSpec("TCP", 443),)),)))
            elif j < 29:
                pols.append(NetworkPolicy(ns.name, name, sel(tier="db"), ("Ingress",), ingress=(PolicyRule(
                    (Peer(pod_selector=sel(tier="api"), namespace_selector=sel(team=f"t{(i + j) % 10}")),),
                    (PortSpec("TCP", 5432),)),)))
            else:
                pols.append(NetworkPolicy(ns.name, name, tgt, ("Egress",), egress=(
                    PolicyRule((Peer(ip_block=IPBlock("0.0.0.0/0", ("169.254.0.0/16",))),), (PortSpec("TCP", 443),)),
                    PolicyRule((), (PortSpec("UDP", 53),)))))
    return ns_list, node_list, pod_list, pols


# --------------------------------------------------------------------------- records as Kubernetes JSON


def namespace_json(ns: Namespace) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns.name, "labels": dict(ns.labels)}}


def node_json(n: Node) -> dict[str, Any]:
    addresses = [{"type": "InternalIP", "address": a} for a in n.addresses]
    addresses.append({"type": "Hostname", "address": n.name})
    spec: dict[str, Any] = {"podCIDRs": list(n.pod_cidrs)}
    if n.pod_cidrs:
        spec["podCIDR"] = n.pod_cidrs[0]
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n.name, "labels": {
        "kubernetes.io/hostname": n.name}}, "spec": spec, "status": {"addresses": addresses}}


def pod_json(p: Pod) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "registry.k8s.io/pause:3.9"}
    if p.ports:
        container["ports"] = [{"containerPort": c.port, "protocol": c.protocol, **({"name": c.name} if c.name else {})}
                              for c in p.ports]
    spec: dict[str, Any] = {"nodeName": p.node, "containers": [container]}
    if p.host_network:
        spec["hostNetwork"] = True
    status: dict[str, Any] = {"phase": p.phase}
    if p.ips:
        status["podIP"] = p.ips[0]
        status["podIPs"] = [{"ip": ip} for ip in p.ips]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": p.name, "namespace": p.namespace, "labels": dict(p.labels)},
            "spec": spec, "status": status}


def selector_json(s: LabelSelector) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if s.match_labels:
        out["matchLabels"] = dict(s.match_labels)
    if s.expressions:
        out["matchExpressions"] = [
            {"key": r.key, "operator": r.operator, **({"values": list(r.values)} if r.values else {})}
            for r in s.expressions]
    return out


def peer_json(p: Peer) -> dict[str, Any]:
    if p.ip_block is not None:
        block: dict[str, Any] = {"cidr": p.ip_block.cidr}
        if p.ip_block.excepts:
            block["except"] = list(p.ip_block.excepts)
        return {"ipBlock": block}
    out: dict[str, Any] = {}
    if p.namespace_selector is not None:
        out["namespaceSelector"] = selector_json(p.namespace_selector)
        if p.pod_selector is not None and not p.pod_selector.is_empty:
            out["podSelector"] = selector_json(p.pod_selector)
    else:
        out["podSelector"] = selector_json(p.pod_selector or SELECT_ALL)
    return out


def port_json(p: PortSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"protocol": p.protocol}
    if p.port is not None:
        out["port"] = p.port
    if p.end_port is not None:
        out["endPort"] = p.end_port
    return out


def rule_json(r: PolicyRule, peers_field: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.peers:
        out[peers_field] = [peer_json(p) for p in r.peers]
    if r.ports:
        out["ports"] = [port_json(p) for p in r.ports]
    return out


def policy_json(p: NetworkPolicy) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": selector_json(p.pod_selector), "policyTypes": list(p.policy_types)}
    if p.ingress:
        spec["ingress"] = [rule_json(r, "from") for r in p.ingress]
    if p.egress:
        spec["egress"] = [rule_json(r, "to") for r in p.egress]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": p.name, "namespace": p.namespace}, "spec": spec}


def check_round_trip(nss: list[Namespace], nodes: list[Node], pods: list[Pod], pols: list[NetworkPolicy]) -> None:
    """``controller.parse`` of each record's JSON must give the record back
    (else the mirror would compute a different cluster than the controller)."""
    from controller import parse

    checks: list[tuple[list[Any], Callable[[Any], dict[str, Any]], Callable[[Any], Any]]] = [
        (list(nss), namespace_json, parse.parse_namespace), (list(nodes), node_json, parse.parse_node),
        (list(pods), pod_json, parse.parse_pod), (list(pols), policy_json, parse.parse_policy)]
    for records, to_json, parser in checks:
        for rec in records:
            got = parser(to_json(rec))
            if got != rec:
                raise BenchError(f"bench bug: the controller's parser reads {rec!r} back as {got!r}")


# --------------------------------------------------------------------------- small helpers


class BenchError(Exception):
    """The run cannot go on; the message says why."""


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


def ms_summary(values: list[float]) -> dict[str, float]:
    """n, p50, p99, max in milliseconds of values in seconds."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(pct(values, 50) * 1000, 1), "p99": round(pct(values, 99) * 1000, 1),
            "max": round(max(values) * 1000, 1)}


def rss_mb(pid: int | str = "self") -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB of a process (VmRSS, VmHWM)."""
    cur = peak = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


_TICK = os.sysconf("SC_CLK_TCK")
BIG_CHANGE = 500  # changes reaching at least this many nodes get their CPU split by process


def proc_cpu(pid: int) -> float:
    """utime + stime of a process in seconds (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------- agents (worker process)


class MemApplier:
    """An in-memory dataplane: keeps the state, reports counts."""

    def __init__(self) -> None:
        self.state: NodeState | None = None
        self.applies = 0

    async def apply(self, state: NodeState, digest: str = "") -> Any:
        self.state = state
        self.applies += 1
        return _Result(count(state))


class _Result:
    __slots__ = ("counts",)
    ok = True
    error = ""
    seconds = 0.0
    writes = 1

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts


class ReportingClient(AgentClient):
    """An agent that also reports each successful ack on stdout:
    ``A <node> <version> <applied digest> <time.monotonic()>``.  The time
    is taken when ``handle`` returns, i.e. when the session hands the ack
    to gRPC (the next statement writes it)."""

    async def handle(self, u: Update) -> Ack:
        ack = await super().handle(u)
        if ack.ok:
            _report(f"A {self.settings.node} {ack.applied_version} {ack.applied_digest} {time.monotonic():.6f}\n")
        return ack


_pending: list[str] = []


REPORT_EVERY = 0.002  # seconds between a worker's report writes


def _report(line: str) -> None:
    """Queue one report line; the lines queued within ``REPORT_EVERY`` go
    out in one write (hundreds of agents ack the same change together, one
    or two per turn of the event loop: a write per turn cost ~6 % of the
    workers' CPU).  The line carries the ack's own time, so the delay of
    the write changes no figure."""
    if not _pending:
        asyncio.get_running_loop().call_later(REPORT_EVERY, _flush_reports)
    _pending.append(line)


def _flush_reports() -> None:
    data = "".join(_pending).encode()
    _pending.clear()
    while data:
        data = data[os.write(1, data):]


async def worker(addr: str, first: int, n: int, report: bool, collector: str = "off") -> None:
    """Hundreds of simulated agents in one process.  ``collector`` "off"
    (default): the cyclic garbage collector is disabled here (reference
    counting still frees the states and messages; the RSS is reported),
    because one heap holding hundreds of agents' states makes every
    collection walk hundreds of times what a real agent's walks (measured
    with it on: young-generation pauses of 10-37 ms, ~100 ms of collection
    per worker per change reaching most nodes, full ones up to 550 ms),
    and that is the harness, not the agent.  "on": CPython's default."""
    if collector == "off":
        gc.disable()
    logging.basicConfig(level=logging.ERROR)
    cls = ReportingClient if report else AgentClient
    clients = [cls(ClientSettings(node_name(i), [addr], "bench", backoff_initial=0.5, backoff_max=5.0,
                                  connect_timeout=30.0), MemApplier())
               for i in range(first, first + n)]
    tasks = [asyncio.create_task(c.run()) for c in clients]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    for c in clients:
        c.stop()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if _pending:
        _flush_reports()
    stats = {"cpu_seconds": cpu_seconds(), "rss_mb": rss_mb()[1], "agents": n,
             "applies": sum(c.applies for c in clients), "rejects": sum(c.rejects for c in clients)}
    os.write(1, ("S " + json.dumps(stats) + "\n").encode())


# --------------------------------------------------------------------------- the API emulator (its own process)


async def emulator(a: argparse.Namespace) -> None:
    """Preload the cluster through the store's Python API, serve on
    127.0.0.1 (any free port), write the kubeconfig, print ``ready <url>
    <preload seconds>``; on SIGTERM/SIGINT stop and print ``S {stats}``."""
    from stockade.kubeemu.emulator import KubeEmulator
    from stockade.kubeemu.store import Store

    t = time.perf_counter()
    nss, nodes, pods, pols = cluster(a.nodes, a.namespaces, a.pods, a.policies, a.seed)
    store = Store(history=a.history)
    ns_t, node_t, pod_t, pol_t = (store.type_of(k) for k in ("namespaces", "nodes", "pods", "networkpolicies"))
    for ns in nss:
        store.create(ns_t, namespace_json(ns))
    for node in nodes:
        store.create(node_t, node_json(node))
    for p in pods:
        store.create(pod_t, pod_json(p), p.namespace)
    for pol in pols:
        store.create(pol_t, policy_json(pol), pol.namespace)
    del nss, nodes, pods, pols
    # the preloaded objects live for the whole run: keep the collector off them
    gc.collect()
    gc.freeze()
    preload = time.perf_counter() - t
    emu = KubeEmulator(host="127.0.0.1", port=0, store=store)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await emu.start()
    try:
        emu.write_kubeconfig(a.kubeconfig)
        print(f"ready {emu.url} {preload:.2f}", flush=True)
        await stop.wait()
    finally:
        await emu.stop()
    print("S " + json.dumps({"cpu_seconds": cpu_seconds(), "rss_mb": rss_mb()}), flush=True)


# --------------------------------------------------------------------------- processes


_PARENT_ENV = "STOCKADE_WIRE_BENCH_PARENT"


def _prctl_pdeathsig() -> None:
    """SIGTERM this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def die_with_parent() -> None:
    """In this file's own children (workers, emulator): end with the bench
    process, even if it is killed; also if it died before this ran."""
    _prctl_pdeathsig()
    parent = os.environ.get(_PARENT_ENV)
    if parent and os.getppid() != int(parent):
        sys.exit(1)


class Procs:
    """The subprocesses of a run: started with their stderr in a log file,
    stopped with SIGTERM then SIGKILL, also on errors and Ctrl-C."""

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.procs: list[tuple[str, asyncio.subprocess.Process, str]] = []

    async def spawn(self, name: str, argv: list[str], own: bool = True) -> asyncio.subprocess.Process:
        """``own``: this file in a child mode, which ends itself with the bench
        process (``die_with_parent``); else (the controller) the death signal
        is set between fork and exec, which forking a process that runs gRPC
        threads must avoid (the fan-out-only mode's own children)."""
        log = os.path.join(self.tmp, f"{name}.log")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               _PARENT_ENV: str(os.getpid())}
        with open(log, "wb") as err:
            p = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                     stdout=asyncio.subprocess.PIPE, stderr=err, cwd=str(ROOT),
                                                     env=env, preexec_fn=None if own else _prctl_pdeathsig)
        self.procs.append((name, p, log))
        return p

    def name(self, p: asyncio.subprocess.Process) -> str:
        return next(n for n, q, _ in self.procs if q is p)

    def tail(self, name: str, lines: int = 15) -> str:
        for n, _, log in self.procs:
            if n == name:
                try:
                    text = Path(log).read_text(errors="replace").splitlines()
                except OSError:
                    return ""
                return "\n".join(text[-lines:])
        return ""

    async def stop(self, p: asyncio.subprocess.Process, timeout: float = 15.0) -> None:
        if p.returncode is None:
            try:
                p.send_signal(signal.SIGTERM)
                await asyncio.wait_for(p.wait(), timeout)
            except ProcessLookupError:
                pass
            except (TimeoutError, asyncio.CancelledError):
                self.kill(p)
                raise

    @staticmethod
    def kill(p: asyncio.subprocess.Process) -> None:
        if p.returncode is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill_all(self) -> None:
        for _, p, _ in self.procs:
            self.kill(p)


# --------------------------------------------------------------------------- end to end: the ack board


class AckBoard:
    """Every ack the workers report, and what this process waits for.

    ``current``: the mirror's digest of each node (what its agent must end
    up with); ``pending``: nodes of the current wait and their expected
    digest; ``hits``: node -> time of the ack that matched.  An ack whose
    digest is not the mirror's current one is a mismatch (the controller
    computed something else); a matching ack of a node not waited for is
    an extra (a duplicate send)."""

    def __init__(self) -> None:
        self.current: dict[str, str] = {}
        self.latest: dict[str, tuple[int, str, float]] = {}
        self.pending: dict[str, str] = {}
        self.hits: dict[str, float] = {}
        self.t0 = 0.0
        self.done = asyncio.Event()
        self.bad = asyncio.Event()  # a node waited for acked another digest
        self.mismatches: list[tuple[str, str, str, int]] = []
        self.extra = 0
        self.acks = 0
        self.worker_stats: list[dict[str, Any]] = []

    def expect(self, digests: Mapping[str, str]) -> None:
        self.current.update(digests)
        self.pending = dict(digests)
        self.hits = {}
        self.done = asyncio.Event()
        self.bad = asyncio.Event()
        if not self.pending:
            self.done.set()

    def start(self) -> float:
        self.t0 = time.monotonic()
        return self.t0

    def line(self, raw: bytes) -> None:
        if raw.startswith(b"A "):
            _, node, version, digest, t = raw.decode().split()
            self.ack(node, int(version), digest, float(t))
        elif raw.startswith(b"S "):
            self.worker_stats.append(json.loads(raw[2:]))

    def ack(self, node: str, version: int, digest: str, t: float) -> None:
        self.acks += 1
        self.latest[node] = (version, digest, t)
        want = self.pending.get(node)
        if want is not None and digest == want and t >= self.t0:
            del self.pending[node]
            self.hits[node] = t
            if not self.pending:
                self.done.set()
        elif digest != self.current.get(node):
            self.mismatches.append((node, self.current.get(node, "-"), digest, version))
            if want is not None:
                self.bad.set()
        else:
            self.extra += 1

    def describe(self, limit: int = 10) -> str:
        lines = []
        for node, want in sorted(self.pending.items())[:limit]:
            got = self.latest.get(node)
            seen = f"latest ack {got[1][:16]} (version {got[0]})" if got else "no ack at all"
            lines.append(f"  {node}: expected digest {want[:16]}, {seen}")
        if len(self.pending) > limit:
            lines.append(f"  ... and {len(self.pending) - limit} more nodes")
        others = [m for m in self.mismatches if m[0] not in self.pending]
        for node, want, got_d, v in others[:limit]:
            lines.append(f"  {node}: acked digest {got_d[:16]} (version {v}), the mirror expects {want[:16]}")
        return "\n".join(lines)

    async def wait(self, timeout: float, what: str, deaths: list[asyncio.Task[Any]]) -> dict[str, float]:
        """The ack times of every pending node; BenchError on timeout, on a
        mismatching digest or when a process died."""
        if self.pending:
            done, bad = asyncio.create_task(self.done.wait()), asyncio.create_task(self.bad.wait())
            finished, _ = await asyncio.wait([done, bad, *deaths], timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
            if bad in finished and done not in finished:
                # the controller sent some node another state: give the others a moment, then report
                finished, _ = await asyncio.wait([done], timeout=2.0)
            done.cancel()
            bad.cancel()
            if done not in finished:
                dead = [t for t in deaths if t in finished]
                if dead:
                    raise BenchError(f"{what}: {dead[0].result()}")
                if self.mismatches:
                    raise BenchError(f"{what}: agents acked digests the mirror does not expect (the controller "
                                     f"and the mirror computed different states):\n{self.describe()}")
                raise BenchError(
                    f"{what}: {len(self.pending)} nodes did not ack the mirror's digest within {timeout:.0f} s "
                    f"(the controller's states differ from the mirror's, or it is stuck):\n{self.describe()}")
        if self.mismatches:
            raise BenchError(f"{what}: agents acked digests the mirror does not expect (the controller and the "
                             f"mirror computed different states):\n{self.describe()}")
        return dict(self.hits)


async def read_lines(stream: asyncio.StreamReader, board: AckBoard) -> None:
    while True:
        raw = await stream.readline()
        if not raw:
            return
        board.line(raw)


async def death(p: asyncio.subprocess.Process, name: str, procs: Procs) -> str:
    rc = await p.wait()
    return f"{name} exited with status {rc}; its log ends:\n{procs.tail(name)}"


# --------------------------------------------------------------------------- end to end: mirror and changes


class Mirror:
    """The bench's own engine: same records as the controller, so the same
    states; ``flush`` returns the nodes whose digest changed."""

    def __init__(self) -> None:
        from controller.engine import Engine
        from stockade.wire.digest import DigestCache

        self.engine = Engine()
        self.digests = DigestCache()
        self.states: dict[str, NodeState] = {}
        self.current: dict[str, str] = {}
        self._flushes = 0

    def flush(self) -> dict[str, str]:
        changed = {}
        for node, st in self.engine.flush().items():
            d = self.digests.digest(st, evict=False)
            self.states[node] = st
            if self.current.get(node) != d:
                self.current[node] = changed[node] = d
        self._flushes += 1
        if self._flushes % 50 == 0:
            self.digests.retain(self.states.values())
        return changed


MERGE_PATCH = "application/merge-patch+json"


@dataclasses.dataclass
class Change:
    kind: str
    method: str
    path: str
    body: Any
    content_type: str
    apply: Callable[[Any], None]  # to the mirror's engine


def pod_path(ns: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{ns}/pods" + (f"/{name}" if name else "")


def policy_path(ns: str, name: str) -> str:
    return f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}"


class ChangeMaker:
    """The changes, in a fixed cycle of ten: six pod label flips (every
    fourth flips ``tier``, the others ``app``), a pod add, a pod delete
    (preferring pods the bench added) and two policy edits (port, peer,
    pod selector in turn)."""

    CYCLE = ("pod-relabel", "pod-relabel", "pod-add", "pod-relabel", "policy", "pod-relabel", "pod-delete",
             "pod-relabel", "pod-relabel", "policy")
    POLICY_EDITS = ("policy-port", "policy-peer", "policy-selector")

    def __init__(self, seed: int, nodes: int, nss: list[Namespace], pods: list[Pod],
                 pols: list[NetworkPolicy]) -> None:
        self.rng = random.Random(seed + 1)
        self.nodes = nodes
        self.namespaces = [ns.name for ns in nss]
        self.pods: dict[str, Pod] = {p.key: p for p in pods}
        self.keys = list(self.pods)
        self.added: list[str] = []
        self.policies = {p.key: p for p in pols}
        self.editable = [k for k, p in self.policies.items() if not p.pod_selector.is_empty and (p.ingress or p.egress)]
        self.first_rule_peers = {k: len((self.policies[k].ingress or self.policies[k].egress)[0].peers)
                                 for k in self.editable}
        self.extra = self.relabels = self.policy_edits = 0

    def next(self, i: int) -> Change:
        kind = self.CYCLE[i % len(self.CYCLE)]
        if kind == "policy" and not self.editable:
            kind = "pod-relabel"
        if kind == "pod-relabel":
            return self._relabel()
        if kind == "pod-add":
            return self._add()
        if kind == "pod-delete":
            return self._delete()
        edit = self.POLICY_EDITS[self.policy_edits % len(self.POLICY_EDITS)]
        self.policy_edits += 1
        return self._policy(edit)

    def _relabel(self) -> Change:
        p = self.pods[self.rng.choice(self.keys)]
        self.relabels += 1
        field, values = ("tier", TIERS) if self.relabels % 4 == 0 else ("app", tuple(f"a{k}" for k in range(20)))
        value = self.rng.choice([v for v in values if v != p.labels.get(field)])
        new = dataclasses.replace(p, labels={**p.labels, field: value})
        self.pods[p.key] = new
        return Change("pod-relabel", "PATCH", pod_path(p.namespace, p.name), {"metadata": {"labels": {field: value}}},
                      MERGE_PATCH, lambda e: e.set_pod(new))

    def _add(self) -> Change:
        self.extra += 1
        n = self.rng.randrange(self.nodes)
        new = Pod(self.rng.choice(self.namespaces), f"x{self.extra}",
                  {"app": f"a{self.rng.randrange(20)}", "tier": self.rng.choice(TIERS)}, node_name(n),
                  (pod_ip(n, 200 + self.extra % 50),))
        self.pods[new.key] = new
        self.keys.append(new.key)
        self.added.append(new.key)
        return Change("pod-add", "POST", pod_path(new.namespace), pod_json(new), "application/json",
                      lambda e: e.set_pod(new))

    def _delete(self) -> Change:
        key = self.rng.choice(self.added or self.keys)
        p = self.pods.pop(key)
        self.keys.remove(key)
        if key in self.added:
            self.added.remove(key)
        return Change("pod-delete", "DELETE", pod_path(p.namespace, p.name), None, "application/json",
                      lambda e: e.remove_pod(key))

    def _policy(self, edit: str) -> Change:
        key = self.rng.choice(self.editable)
        p = self.policies[key]
        direction = "ingress" if p.ingress else "egress"
        rules = list(p.ingress or p.egress)
        r0 = rules[0]
        new_sel = p.pod_selector
        if edit == "policy-port":
            ports = list(r0.ports)
            first = ports[0] if ports else PortSpec("TCP", 8080)
            num = first.port if isinstance(first.port, int) else 8080
            ports[:1] = [dataclasses.replace(first, port=num + 1 if num % 2 == 0 else num - 1)]
            rules[0] = dataclasses.replace(r0, ports=tuple(ports))
        elif edit == "policy-peer":
            peers = list(r0.peers)
            if len(peers) > self.first_rule_peers[key]:
                peers.pop()
            else:
                peers.append(Peer(pod_selector=sel(app=f"a{self.rng.randrange(20)}")))
            rules[0] = dataclasses.replace(r0, peers=tuple(peers))
        else:
            labels = dict(new_sel.match_labels)
            field, values = ("app", tuple(f"a{k}" for k in range(20))) if "app" in labels else ("tier", TIERS)
            labels[field] = self.rng.choice([v for v in values if v != labels.get(field)])
            new_sel = sel(**labels)
        if direction == "ingress":
            new = dataclasses.replace(p, pod_selector=new_sel, ingress=tuple(rules))
        else:
            new = dataclasses.replace(p, pod_selector=new_sel, egress=tuple(rules))
        body = policy_json(new)
        from controller import parse

        got = parse.parse_policy(body)
        if got != new:
            raise BenchError(f"bench bug: the controller's parser reads {new!r} back as {got!r}")
        self.policies[key] = new
        return Change(edit, "PUT", policy_path(p.namespace, p.name), body, "application/json",
                      lambda e: e.set_policy(new))


# --------------------------------------------------------------------------- end to end: the controller's /metrics


BYTES_SENT = "stockade_wire_bytes_sent_total"
E2S_SUM, E2S_COUNT = "stockade_event_to_send_seconds_sum", "stockade_event_to_send_seconds_count"
WRITER_CHANGES = "stockade_writer_batch_changes_sum"
CONNECTED = "stockade_wire_connected_agents"
METRICS = (BYTES_SENT, E2S_SUM, E2S_COUNT, WRITER_CHANGES, CONNECTED)


async def scrape(session: Any, base: str) -> dict[str, float]:
    async with session.get(base + "/metrics") as r:
        text = await r.text()
    out = {}
    for name in METRICS:
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        if m:
            out[name] = float(m.group(1))
    return out


async def watch_start(session: Any, base: str, t_start: float, nodes: int, out: dict[str, Any]) -> None:
    """Poll ``/readyz`` and the connected-agents gauge every 50 ms; note
    when each is reached (seconds since the controller process started)."""
    import aiohttp

    while "controller_ready_seconds" not in out or "agents_connected_seconds" not in out:
        try:
            if "controller_ready_seconds" not in out:
                async with session.get(base + "/readyz") as r:
                    if r.status == 200:
                        out["controller_ready_seconds"] = round(time.monotonic() - t_start, 2)
                        print(f"  controller ready: {out['controller_ready_seconds']} s", file=sys.stderr, flush=True)
            if "agents_connected_seconds" not in out and (await scrape(session, base)).get(CONNECTED, 0) >= nodes:
                out["agents_connected_seconds"] = round(time.monotonic() - t_start, 2)
        except (aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- end to end: the run


async def bench(a: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    from stockade.kubeemu.store import INITIAL_NAMESPACES
    from stockade.wire import codec

    out: dict[str, Any] = {"mode": "end-to-end", "nodes": a.nodes, "pods": a.pods, "policies": a.policies,
                           "namespaces": a.namespaces, "workers": a.workers, "worker_gc": a.worker_gc,
                           "changes": a.changes}
    tmp = tempfile.mkdtemp(prefix="stockade-wire-bench-")
    procs = Procs(tmp)
    board = AckBoard()
    readers: list[asyncio.Task[None]] = []
    deaths: list[asyncio.Task[str]] = []
    ok = False
    try:
        kubeconfig = os.path.join(tmp, "kubeconfig")
        emu = await procs.spawn("emulator", [
            sys.executable, __file__, "--emulator", "--kubeconfig", kubeconfig, "--nodes", str(a.nodes),
            "--pods", str(a.pods), "--policies", str(a.policies), "--namespaces", str(a.namespaces),
            "--seed", str(a.seed), "--history", str(max(1000, 4 * a.changes))])
        deaths.append(asyncio.create_task(death(emu, "emulator", procs)))

        # the mirror, while the emulator preloads the same cluster on the other core
        t = time.perf_counter()
        nss, nodes, pods, pols = cluster(a.nodes, a.namespaces, a.pods, a.policies, a.seed)
        check_round_trip(nss, nodes, pods, pols)
        mirror = Mirror()
        # the emulator's own namespaces are listed by the controller too
        builtin = [Namespace(n, {"kubernetes.io/metadata.name": n}) for n in INITIAL_NAMESPACES]
        mirror.engine.load([*builtin, *nss], nodes, pods, pols)
        first = mirror.flush()
        maker = ChangeMaker(a.seed, a.nodes, nss, pods, pols)
        del pods, pols
        gc.collect()
        gc.freeze()
        out["mirror_build_seconds"] = round(time.perf_counter() - t, 2)
        if len(first) != a.nodes:
            raise BenchError(f"the mirror has states for {len(first)} of {a.nodes} nodes")
        sizes = [count(s) for s in mirror.states.values()]
        out["per_node_mean"] = {k: round(statistics.mean(c[k] for c in sizes), 1) for k in sizes[0]}

        assert emu.stdout is not None
        try:
            ready = (await asyncio.wait_for(emu.stdout.readline(), 600)).decode().split()
        except TimeoutError:
            raise BenchError("the emulator did not get ready in 600 s") from None
        if not ready or ready[0] != "ready":
            raise BenchError(f"the emulator did not start; its log ends:\n{procs.tail('emulator')}")
        emu_url, out["emulator_preload_seconds"] = ready[1], float(ready[2])
        print(f"  mirror built in {out['mirror_build_seconds']} s, emulator preloaded in "
              f"{out['emulator_preload_seconds']} s", file=sys.stderr, flush=True)

        # the controller and the agents start together
        grpc_port, http_port = free_port(), free_port()
        ctl_url = f"http://127.0.0.1:{http_port}"
        emu_cpu0 = proc_cpu(emu.pid)
        board.expect(mirror.current)
        t_start = board.start()
        ctl = await procs.spawn("controller", [
            sys.executable, "-m", "stockade", "controller", "--kubeconfig", kubeconfig,
            "--grpc-listen", f"127.0.0.1:{grpc_port}", "--http-listen", f"127.0.0.1:{http_port}",
            "--replica-id", REPLICA, "--log-level", "WARNING", "--insecure-grpc", "--auth", "none"], own=False)
        deaths.append(asyncio.create_task(death(ctl, "controller", procs)))
        per = -(-a.nodes // a.workers)
        workers = []
        for w_i in range(a.workers):
            first_node, n = w_i * per, min(per, a.nodes - w_i * per)
            if n <= 0:
                break
            p = await procs.spawn(f"worker-{w_i}", [sys.executable, __file__, "--worker", f"127.0.0.1:{grpc_port}",
                                                    str(first_node), str(n), "1", a.worker_gc])
            workers.append(p)
            assert p.stdout is not None
            readers.append(asyncio.create_task(read_lines(p.stdout, board)))
            deaths.append(asyncio.create_task(death(p, f"worker-{w_i}", procs)))

        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            starter = asyncio.create_task(watch_start(session, ctl_url, t_start, a.nodes, out))
            try:
                acked = await board.wait(a.first_sync_timeout, "first sync", deaths)
            finally:
                if not starter.done():
                    await asyncio.sleep(0.2)  # the poller's last round, if ready/connected just happened
                starter.cancel()
            out["first_sync_all_acked_seconds"] = round(max(acked.values()) - t_start, 2)
            out["agents_acked_first_state"] = len(acked)
            out["first_sync_controller_cpu_seconds"] = round(proc_cpu(ctl.pid), 2)
            cur, peak = rss_mb(ctl.pid)
            out["first_sync_controller_rss_mb"] = {"now": round(cur), "peak": round(peak)}
            out["first_sync_emulator_cpu_seconds"] = round(proc_cpu(emu.pid) - emu_cpu0, 2)
            print(f"  first sync: {out['first_sync_all_acked_seconds']} s", file=sys.stderr, flush=True)
            m0 = await scrape(session, ctl_url)
            if BYTES_SENT not in m0:
                raise BenchError(f"the controller's /metrics has no {BYTES_SENT}")
            out["snapshot_bytes_total"] = int(m0[BYTES_SENT])
            out["snapshot_bytes_per_node_mean"] = round(m0[BYTES_SENT] / a.nodes)

            # ---- changes, one at a time, written at the emulator
            lat: dict[str, list[float]] = {}
            api_write: list[float] = []
            e2p: list[float] = []
            affected: list[int] = []
            affected_by_kind: dict[str, list[int]] = {}
            change_bytes: list[int] = []
            ratio_pod: list[float] = []
            ratio_policy: list[float] = []
            noop: dict[str, int] = {}
            noop_settle: list[float] = []
            window_cpu = 0.0
            big: list[tuple[int, float, float, float, float]] = []  # nodes, latency, controller/workers/bench CPU
            per_change: list[str] | None = ["change,kind,path,nodes,write_to_last_ack_ms,controller_cpu_ms"] \
                if a.changes_csv else None
            ctl_cpu0, emu_cpu1 = proc_cpu(ctl.pid), proc_cpu(emu.pid)
            for i in range(a.changes):
                ch = maker.next(i)
                ch.apply(mirror.engine)
                expected = mirror.flush()
                board.expect(expected)
                c0, w0, b0 = proc_cpu(ctl.pid), sum(proc_cpu(w.pid) for w in workers), cpu_seconds()
                t0 = board.start()
                async with session.request(ch.method, emu_url + ch.path, data=None if ch.body is None else
                                           json.dumps(ch.body), headers={"Content-Type": ch.content_type}) as r:
                    body = await r.read()
                    if r.status not in (200, 201):
                        raise BenchError(f"change {i} ({ch.kind}): {ch.method} {ch.path} -> {r.status}: "
                                         f"{body[:300]!r}")
                api_write.append(time.monotonic() - t0)
                if expected:
                    acked = await board.wait(a.change_timeout, f"change {i} ({ch.kind})", deaths)
                    lat.setdefault(ch.kind, []).append(max(acked.values()) - t0)
                    c1 = proc_cpu(ctl.pid)
                    if per_change is not None:
                        per_change.append(f"{i},{ch.kind},{ch.path},{len(expected)},"
                                          f"{1000 * (max(acked.values()) - t0):.1f},{1000 * (c1 - c0):.0f}")
                    window_cpu += c1 - c0
                    if len(expected) >= BIG_CHANGE:
                        big.append((len(expected), max(acked.values()) - t0, c1 - c0,
                                    sum(proc_cpu(w.pid) for w in workers) - w0, cpu_seconds() - b0))
                    affected.append(len(expected))
                    affected_by_kind.setdefault(ch.kind, []).append(len(expected))
                else:
                    noop[ch.kind] = noop.get(ch.kind, 0) + 1
                    while True:  # until the controller's writer applied it (nothing to publish)
                        m = await scrape(session, ctl_url)
                        if m.get(WRITER_CHANGES, 0) > m0.get(WRITER_CHANGES, 0):
                            break
                        if time.monotonic() - t0 > a.change_timeout:
                            raise BenchError(f"change {i} ({ch.kind}, affecting no node): the controller's writer "
                                             f"did not apply it in {a.change_timeout} s")
                        await asyncio.sleep(0.005)
                    noop_settle.append(time.monotonic() - t0)
                    if board.mismatches:
                        raise BenchError(f"change {i} ({ch.kind}): the mirror expected no node to change, but agents "
                                         f"acked new digests:\n{board.describe()}")
                m1 = await scrape(session, ctl_url)
                if expected:
                    sent = int(m1[BYTES_SENT] - m0[BYTES_SENT])
                    change_bytes.append(sent)
                    if m1.get(E2S_COUNT, 0) > m0.get(E2S_COUNT, 0):
                        e2p.append((m1[E2S_SUM] - m0[E2S_SUM]) / (m1[E2S_COUNT] - m0[E2S_COUNT]))
                    snap = sum(sum(msg.ByteSize() for msg in codec.encode_snapshot(mirror.states[n], 1, d, REPLICA))
                               for n, d in expected.items())
                    (ratio_policy if ch.kind.startswith("policy") else ratio_pod).append(sent / snap)
                m0 = m1
                done = i + 1
                if done % 50 == 0 or done == a.changes:
                    all_lat = [x for v in lat.values() for x in v]
                    if all_lat:
                        print(f"  {done} changes, write -> last ack p50 {pct(all_lat, 50) * 1000:.0f} ms, "
                              f"p99 {pct(all_lat, 99) * 1000:.0f} ms", file=sys.stderr, flush=True)
            ctl_cpu_changes = proc_cpu(ctl.pid) - ctl_cpu0
            await asyncio.sleep(0.5)  # any late ack of a state the mirror does not expect
            if board.mismatches:
                raise BenchError(f"after the changes: agents acked digests the mirror does not expect:\n"
                                 f"{board.describe()}")
            emu_cpu_changes = proc_cpu(emu.pid) - emu_cpu1
            # what one /metrics scrape costs the controller (one per change above)
            s0 = proc_cpu(ctl.pid)
            for _ in range(50):
                await scrape(session, ctl_url)
            scrape_cpu = (proc_cpu(ctl.pid) - s0) / 50

        if per_change is not None:
            Path(a.changes_csv).write_text("\n".join(per_change) + "\n")
        all_lat = [x for v in lat.values() for x in v]
        measured = len(all_lat)
        out["change_kinds"] = {k: len(v) for k, v in sorted(lat.items())}
        out["noop_changes"] = dict(sorted(noop.items()))
        if noop_settle:
            out["noop_write_to_applied_ms"] = ms_summary(noop_settle)
        out["write_to_last_ack_ms"] = ms_summary(all_lat)
        out["write_to_last_ack_ms_by_kind"] = {k: ms_summary(v) for k, v in sorted(lat.items())}
        out["api_write_ms"] = ms_summary(api_write)
        out["event_to_publish_ms"] = ms_summary(e2p)
        if affected:
            out["change_affected_nodes"] = {"mean": round(statistics.mean(affected), 1), "max": max(affected)}
            out["change_affected_nodes_by_kind"] = {k: {"mean": round(statistics.mean(v), 1), "max": max(v)}
                                                    for k, v in sorted(affected_by_kind.items())}
            out["write_to_last_ack_ms_per_affected_node"] = round(1000 * sum(all_lat) / sum(affected), 2)
            out["change_bytes_mean"] = round(statistics.mean(change_bytes))
        for name, ratios in (("single_pod", ratio_pod), ("policy_edit", ratio_policy)):
            if ratios:
                out[f"delta_vs_snapshot_bytes_pct_{name}"] = {"mean": round(100 * statistics.mean(ratios), 3),
                                                              "max": round(100 * max(ratios), 3)}
        if big:
            # CPU of each process over the changes reaching many nodes (clock-tick
            # resolution, 10 ms a process: means over many changes only)
            n_sum, lat_sum = sum(b[0] for b in big), sum(b[1] for b in big)
            out[f"changes_reaching_{BIG_CHANGE}_plus_nodes"] = {
                "n": len(big), "nodes_mean": round(n_sum / len(big)),
                "write_to_last_ack_ms_mean": round(1000 * lat_sum / len(big), 1),
                "cpu_us_per_node": {"controller": round(1e6 * sum(b[2] for b in big) / n_sum),
                                    "agents": round(1e6 * sum(b[3] for b in big) / n_sum),
                                    "bench": round(1e6 * sum(b[4] for b in big) / n_sum)},
                "cores_busy": round(sum(b[2] + b[3] + b[4] for b in big) / lat_sum, 2)}
        out["changes_controller_cpu_ms_per_change"] = {
            "write_to_last_ack": round(1000 * window_cpu / max(1, measured), 1),
            "all": round(1000 * ctl_cpu_changes / max(1, a.changes), 1),
            "of_which_metrics_scrape": round(1000 * scrape_cpu, 1)}
        cur, peak = rss_mb(ctl.pid)
        out["controller_rss_mb"] = {"now": round(cur), "peak": round(peak)}
        out["controller_cpu_seconds_total"] = round(proc_cpu(ctl.pid), 2)
        out["emulator_cpu_seconds"] = {"changes": round(emu_cpu_changes, 2), "total": round(proc_cpu(emu.pid), 2)}
        cur, peak = rss_mb(emu.pid)
        out["emulator_rss_mb"] = {"now": round(cur), "peak": round(peak)}
        out["bench_process_cpu_seconds"] = round(cpu_seconds(), 1)
        for d in deaths:
            d.cancel()
        for p in workers:
            await procs.stop(p, 30.0)
        await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 10)
        out["agent_acks"] = board.acks
        out["unexpected_acks"] = {"wrong_digest": len(board.mismatches), "duplicate": board.extra}
        ws = board.worker_stats
        if len(ws) != len(workers):
            raise BenchError(f"only {len(ws)} of {len(workers)} workers reported their figures")
        out["workers_cpu_seconds"] = round(sum(w["cpu_seconds"] for w in ws), 1)
        out["worker_rss_mb_peak"] = round(max(w["rss_mb"] for w in ws))
        out["agent_applies"] = sum(w["applies"] for w in ws)
        out["agent_rejects"] = sum(w["rejects"] for w in ws)
        # warnings and errors of the controller, but the two about the plaintext channel this bench asks for
        warnings = [ln for ln in Path(tmp, "controller.log").read_text(errors="replace").splitlines()
                    if (" WARNING " in ln or " ERROR " in ln or "Traceback" in ln) and "(--auth none)" not in ln]
        out["controller_log_warnings"] = len(warnings)
        for ln in warnings[:5]:
            print(f"  controller log: {ln}", file=sys.stderr)
        ok = True
        return out
    finally:
        for d in deaths:
            d.cancel()
        try:
            for _, p, _ in reversed(procs.procs):  # workers, controller, then the emulator
                await procs.stop(p)
        except BaseException:
            procs.kill_all()
            raise
        finally:
            procs.kill_all()
            for t_ in readers:
                t_.cancel()
            if not ok:
                for name, _, _ in procs.procs:
                    tail = procs.tail(name, 10)
                    if tail:
                        print(f"--- {name} log (last lines):\n{tail}", file=sys.stderr)
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- fan-out only (in-process distributor)


async def fanout_bench(a: argparse.Namespace) -> dict[str, Any]:
    from controller.distributor import Distributor
    from controller.engine import Engine
    from controller.grpc_server import ControllerGrpcServer
    from stockade.wire import codec

    out: dict[str, Any] = {"mode": "fanout-only", "nodes": a.nodes, "pods": a.pods, "policies": a.policies,
                           "namespaces": a.namespaces, "workers": a.workers, "worker_gc": a.worker_gc,
                           "changes": a.changes}
    t = time.perf_counter()
    nss, nodes, pods, pols = cluster(a.nodes, a.namespaces, a.pods, a.policies, a.seed)
    engine = Engine()
    engine.load(nss, nodes, pods, pols)
    states = engine.flush()
    out["engine_build_seconds"] = round(time.perf_counter() - t, 2)
    sizes = [count(s) for s in states.values()]
    out["per_node_mean"] = {k: round(statistics.mean(c[k] for c in sizes), 1) for k in sizes[0]}

    dist = Distributor(REPLICA)
    server = ControllerGrpcServer(dist, listen="127.0.0.1:0")
    port = await server.start()
    addr = f"127.0.0.1:{port}"
    t = time.perf_counter()
    for node, st in states.items():
        dist.publish(node, st)
    out["publish_all_seconds"] = round(time.perf_counter() - t, 2)

    tmp = tempfile.mkdtemp(prefix="stockade-wire-bench-")
    procs = Procs(tmp)
    per = -(-a.nodes // a.workers)
    workers = []
    try:
        for w_i in range(a.workers):
            first, n = w_i * per, min(per, a.nodes - w_i * per)
            if n <= 0:
                break
            workers.append(await procs.spawn(f"worker-{w_i}", [sys.executable, __file__, "--worker", addr,
                                                                str(first), str(n), "0", a.worker_gc]))
        t = time.perf_counter()
        while dist.stats()["connected"] < a.nodes:
            if time.perf_counter() - t > 120:
                raise BenchError(f"only {dist.stats()['connected']} of {a.nodes} agents connected after 120 s")
            await asyncio.sleep(0.1)
        out["connect_all_seconds"] = round(time.perf_counter() - t, 2)

        cpu0 = cpu_seconds()
        t = time.perf_counter()
        dist.set_ready(True)
        pending = set(states)
        while pending:
            pending = {n for n in pending if not await dist.wait_acked(n, 1, 0)}
            if time.perf_counter() - t > a.first_sync_timeout:
                raise BenchError(f"{len(pending)} agents did not ack their first state in {a.first_sync_timeout} s")
            await asyncio.sleep(0.05)
        out["first_sync_all_acked_seconds"] = round(time.perf_counter() - t, 2)
        print(f"  first sync: {out['first_sync_all_acked_seconds']} s", file=sys.stderr, flush=True)
        out["first_sync_controller_cpu_seconds"] = round(cpu_seconds() - cpu0, 2)
        out["snapshot_bytes_total"] = dist.bytes_sent
        out["snapshot_bytes_per_node_mean"] = round(dist.bytes_sent / a.nodes)

        # ---- single-pod changes, one at a time
        rng = random.Random(a.seed + 1)
        live: dict[str, Pod] = {p.key: p for p in pods}
        extra = 0
        lat: list[float] = []
        fanout: list[float] = []  # publish -> last affected agent's update written (controller side)
        affected: list[int] = []
        ratios: list[float] = []
        change_bytes: list[int] = []
        flush_s: list[float] = []
        measure_cpu = 0.0  # spent computing the snapshot sizes for the ratio (not the controller's work)
        cpu0 = cpu_seconds()
        for i in range(a.changes):
            kind = ("relabel", "add", "delete")[i % 3]
            if kind == "relabel":
                p = live[rng.choice(list(live))]
                new = Pod(p.namespace, p.name, {**p.labels, "app": f"a{rng.randrange(20)}"}, p.node, p.ips)
                live[p.key] = new
                engine.set_pod(new)
            elif kind == "add":
                extra += 1
                n = rng.randrange(a.nodes)
                new = Pod(nss[rng.randrange(len(nss))].name, f"x{extra}",
                          {"app": f"a{rng.randrange(20)}", "tier": "web"}, node_name(n), (pod_ip(n, 200 + extra % 50),))
                live[new.key] = new
                engine.set_pod(new)
            else:
                key = rng.choice([k for k in live if "/x" in k] or list(live))
                del live[key]
                engine.remove_pod(key)
            t = time.perf_counter()
            changed = engine.flush()
            t1 = time.perf_counter()
            flush_s.append(t1 - t)
            b0 = dist.bytes_sent
            versions = {node: dist.publish(node, st) for node, st in changed.items()}
            for node, v in versions.items():
                await dist.wait_sent(node, v, 30)
            fanout.append(time.perf_counter() - t1)
            for node, v in versions.items():
                if not await dist.wait_acked(node, v, 30):
                    raise BenchError(f"change {i}: node {node} did not ack version {v} in 30 s")
            lat.append(time.perf_counter() - t1)
            affected.append(len(changed))
            change_bytes.append(dist.bytes_sent - b0)
            c0 = cpu_seconds()
            if changed:
                snap = sum(sum(m.ByteSize() for m in codec.encode_snapshot(st, 1, "0" * 64, REPLICA))
                           for st in changed.values())
                ratios.append((dist.bytes_sent - b0) / snap)
            measure_cpu += cpu_seconds() - c0
            if (i + 1) % 50 == 0:
                print(f"  {i + 1} changes, p50 so far {pct(lat, 50) * 1000:.0f} ms", file=sys.stderr, flush=True)
        out["changes_controller_cpu_ms_per_change"] = round((cpu_seconds() - cpu0 - measure_cpu) / a.changes * 1000, 1)
        out["publish_to_last_ack_ms_per_affected_node"] = round(1000 * sum(lat) / max(1, sum(affected)), 2)
        out["change_affected_nodes"] = {"mean": round(statistics.mean(affected), 1), "max": max(affected)}
        out["engine_flush_ms_p50"] = round(pct(flush_s, 50) * 1000, 2)
        out["publish_to_last_ack_ms"] = {"p50": round(pct(lat, 50) * 1000, 1), "p99": round(pct(lat, 99) * 1000, 1),
                                         "max": round(max(lat) * 1000, 1)}
        out["publish_to_last_sent_ms"] = {"p50": round(pct(fanout, 50) * 1000, 1),
                                          "p99": round(pct(fanout, 99) * 1000, 1)}
        out["change_bytes_mean"] = round(statistics.mean(change_bytes))
        if ratios:
            out["delta_vs_snapshot_bytes_pct"] = {"mean": round(100 * statistics.mean(ratios), 3),
                                                  "max": round(100 * max(ratios), 3)}
        out["deltas_sent"], out["snapshots_sent"] = dist.deltas_sent, dist.snapshots_sent
        cur, peak = rss_mb()
        out["controller_rss_mb"] = {"now": round(cur), "peak": round(peak)}
        out["controller_cpu_seconds_total"] = round(cpu_seconds() - measure_cpu, 2)
        wstats = []
        for p_ in workers:
            await procs.stop(p_, 60.0)
            assert p_.stdout is not None
            lines = (await p_.stdout.read()).decode().splitlines()
            wstats += [json.loads(ln[2:]) for ln in lines if ln.startswith("S ")]
        if wstats:
            out["workers_cpu_seconds"] = round(sum(w["cpu_seconds"] for w in wstats), 1)
            out["worker_rss_mb_peak"] = round(max(w["rss_mb"] for w in wstats))
            out["agent_rejects"] = sum(w["rejects"] for w in wstats)
        return out
    finally:
        try:
            for _, p_, _ in procs.procs:
                await procs.stop(p_)
        finally:
            procs.kill_all()
            await server.stop(1.0)
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=30000)
    p.add_argument("--policies", type=int, default=3000)
    p.add_argument("--namespaces", type=int, default=100)
    p.add_argument("--workers", type=int, default=4, help="processes hosting the simulated agents")
    p.add_argument("--changes", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--changes-csv", metavar="FILE", help="end to end: one line per change (kind, object, nodes "
                   "reached, write -> last ack ms, controller CPU ms at clock-tick resolution)")
    p.add_argument("--fanout-only", action="store_true",
                   help="the distributor in isolation: in-process Distributor + gRPC, publish -> last ack")
    p.add_argument("--worker-gc", choices=["off", "on"], default="off",
                   help="the simulated agents' processes: cyclic GC off (default: hundreds of agents share one "
                        "heap, a real agent's is one state) or on (CPython's default)")
    p.add_argument("--first-sync-timeout", type=float, default=300.0, metavar="SECONDS")
    p.add_argument("--change-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="longest wait for one change's acks before the run fails")
    # internal: this file as the emulator process
    p.add_argument("--emulator", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    p.add_argument("--history", type=int, default=1000, help=argparse.SUPPRESS)
    return p


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        die_with_parent()
        asyncio.run(worker(argv[1], int(argv[2]), int(argv[3]), argv[4:5] != ["0"], (argv[5:6] or ["off"])[0]))
        return 0
    a = parser().parse_args(argv)
    if a.emulator:
        die_with_parent()
        asyncio.run(emulator(a))
        return 0
    if min(a.nodes, a.namespaces, a.workers) < 1 or a.pods < 0 or a.policies < 0 or a.changes < 0:
        print("wire_bench: --nodes, --namespaces and --workers must be at least 1; counts not negative",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR)
    t = time.perf_counter()

    async def run() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await (fanout_bench(a) if a.fanout_only else bench(a))

    try:
        out = asyncio.run(run())
    except BenchError as e:
        print(f"wire_bench: FAILED: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("wire_bench: interrupted", file=sys.stderr)
        return 130
    out["wall_seconds"] = round(time.perf_counter() - t, 1)
    out["cores"] = os.cpu_count()
    width = max(len(k) for k in out)
    for k, v in out.items():
        print(f"{k:<{width}}  {v}")
    print("JSON " + json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
