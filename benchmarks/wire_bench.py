"""Wire benchmark: one controller, many simulated agents over real gRPC sockets.

    python benchmarks/wire_bench.py [--nodes 1000] [--pods 30000] [--policies 3000]
                                    [--namespaces 100] [--workers 4] [--changes 200]

The controller side is the real thing: ``controller.engine.Engine`` computes
every node's state for a synthetic cluster (pods spread at random over the
nodes, 30 policies per namespace: a default deny, same-namespace app-to-app
rules, namespace-selector rules, namespace+pod-selector rules, an egress
ipBlock/DNS rule), ``controller.distributor.Distributor`` publishes them and
``controller.grpc_server.ControllerGrpcServer`` serves the streams on
127.0.0.1.  The agents are real ``nodeagent.client.AgentClient`` instances
(snapshot/delta reassembly, validation, digest check, ack), several hundred
per worker process, applying to an in-memory applier (the kernel is not
what is measured here).

Printed figures:
  * first sync: all agents connected and waiting, then ``set_ready``:
    seconds until every agent acked its first state (target <= 30 s);
  * changes: single-pod changes (relabel, add, delete) one after another:
    publish -> last affected agent's ack, p50/p99 (target p99 <= 300 ms),
    and publish -> last affected agent's update written (the controller's
    fan-out alone: the simulated agents share the controller's cores, real
    agents have their own);
  * bytes sent per change vs the affected nodes' snapshot bytes (target <= 1%);
  * controller RSS and CPU seconds, workers' CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import resource
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.model import (
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
from stockade.state import NodeState, count


def sel(**kw: str) -> LabelSelector:
    return LabelSelector(tuple(sorted(kw.items())))


def node_name(i: int) -> str:
    return f"node-{i:04d}"


def pod_ip(n: int, slot: int) -> str:
    return f"10.{64 + n // 256}.{n % 256}.{slot}"


def cluster(nodes: int, namespaces: int, pods: int, policies: int, seed: int) -> tuple[
        list[Namespace], list[Node], list[Pod], list[NetworkPolicy]]:
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
                            {"app": f"a{rng.randrange(20)}", "tier": rng.choice(["web", "api", "db"])},
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
                    (Peer(namespace_selector=sel(team=f"t{j % 10}")),), (PortSpec("TCP", 443),)),)))
            elif j < 29:
                pols.append(NetworkPolicy(ns.name, name, sel(tier="db"), ("Ingress",), ingress=(PolicyRule(
                    (Peer(pod_selector=sel(tier="api"), namespace_selector=sel(team=f"t{(i + j) % 10}")),),
                    (PortSpec("TCP", 5432),)),)))
            else:
                pols.append(NetworkPolicy(ns.name, name, tgt, ("Egress",), egress=(
                    PolicyRule((Peer(ip_block=IPBlock("0.0.0.0/0", ("169.254.0.0/16",))),), (PortSpec("TCP", 443),)),
                    PolicyRule((), (PortSpec("UDP", 53),)))))
    return ns_list, node_list, pod_list, pols


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) in MiB of this process."""
    cur = peak = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]


# --------------------------------------------------------------------------- agents (worker process)


class MemApplier:
    """An in-memory dataplane: keeps the state, reports counts."""

    def __init__(self) -> None:
        self.state: NodeState | None = None
        self.applies = 0

    async def apply(self, state: NodeState) -> Any:
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


async def worker(addr: str, first: int, n: int) -> None:
    from nodeagent.client import AgentClient, ClientSettings

    logging.basicConfig(level=logging.ERROR)
    clients = [AgentClient(ClientSettings(node_name(i), [addr], "bench", backoff_initial=0.5, backoff_max=5.0,
                                          connect_timeout=30.0), MemApplier())
               for i in range(first, first + n)]
    tasks = [asyncio.create_task(c.run()) for c in clients]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for c in clients:
        c.stop()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"cpu_seconds": cpu_seconds(), "rss_mb": rss_mb()[1], "agents": n,
                      "applies": sum(c.applies for c in clients), "rejects": sum(c.rejects for c in clients)}),
          flush=True)


# --------------------------------------------------------------------------- controller (main process)


async def bench(a: argparse.Namespace) -> dict[str, Any]:
    from controller.distributor import Distributor
    from controller.engine import Engine
    from controller.grpc_server import ControllerGrpcServer
    from stockade.wire import codec

    out: dict[str, Any] = {"nodes": a.nodes, "pods": a.pods, "policies": a.policies, "namespaces": a.namespaces,
                           "workers": a.workers, "changes": a.changes}
    t = time.perf_counter()
    nss, nodes, pods, pols = cluster(a.nodes, a.namespaces, a.pods, a.policies, a.seed)
    engine = Engine()
    for x in nss:
        engine.set_namespace(x)
    for x in nodes:
        engine.set_node(x)
    for x in pods:
        engine.set_pod(x)
    for x in pols:
        engine.set_policy(x)
    states = engine.flush()
    out["engine_build_seconds"] = round(time.perf_counter() - t, 2)
    sizes = [count(s) for s in states.values()]
    out["per_node_mean"] = {k: round(statistics.mean(c[k] for c in sizes), 1) for k in sizes[0]}

    dist = Distributor("bench")
    server = ControllerGrpcServer(dist, listen="127.0.0.1:0")
    port = await server.start()
    addr = f"127.0.0.1:{port}"
    t = time.perf_counter()
    for node, st in states.items():
        dist.publish(node, st)
    out["publish_all_seconds"] = round(time.perf_counter() - t, 2)

    per = -(-a.nodes // a.workers)
    procs = []
    for w in range(a.workers):
        first, n = w * per, min(per, a.nodes - w * per)
        if n <= 0:
            break
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", addr, str(first), str(n), stdout=asyncio.subprocess.PIPE))
    try:
        t = time.perf_counter()
        while dist.stats()["connected"] < a.nodes:
            if time.perf_counter() - t > 120:
                raise SystemExit(f"only {dist.stats()['connected']} of {a.nodes} agents connected after 120 s")
            await asyncio.sleep(0.1)
        out["connect_all_seconds"] = round(time.perf_counter() - t, 2)

        cpu0 = cpu_seconds()
        t = time.perf_counter()
        dist.set_ready(True)
        pending = set(states)
        while pending:
            pending = {n for n in pending if not await dist.wait_acked(n, 1, 0)}
            if time.perf_counter() - t > 300:
                raise SystemExit(f"{len(pending)} agents did not ack their first state in 300 s")
            await asyncio.sleep(0.05)
        out["first_sync_all_acked_seconds"] = round(time.perf_counter() - t, 2)
        print(f"  first sync: {out['first_sync_all_acked_seconds']} s", file=sys.stderr, flush=True)
        out["first_sync_controller_cpu_seconds"] = round(cpu_seconds() - cpu0, 2)
        out["snapshot_bytes_total"] = dist.bytes_sent
        out["snapshot_bytes_per_node_mean"] = round(dist.bytes_sent / a.nodes)

        # ---- single-pod changes, one at a time
        rng = random.Random(a.seed + 1)
        live = {p.key: p for p in pods}
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
                    raise SystemExit(f"change {i}: node {node} did not ack version {v} in 30 s")
            lat.append(time.perf_counter() - t1)
            affected.append(len(changed))
            change_bytes.append(dist.bytes_sent - b0)
            c0 = cpu_seconds()
            if changed:
                snap = sum(sum(m.ByteSize() for m in codec.encode_snapshot(st, 1, "0" * 64, "bench"))
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
        out["delta_vs_snapshot_bytes_pct"] = {"mean": round(100 * statistics.mean(ratios), 3),
                                              "max": round(100 * max(ratios), 3)}
        out["deltas_sent"], out["snapshots_sent"] = dist.deltas_sent, dist.snapshots_sent
        cur, peak = rss_mb()
        out["controller_rss_mb"] = {"now": round(cur), "peak": round(peak)}
        out["controller_cpu_seconds_total"] = round(cpu_seconds() - measure_cpu, 2)
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        wstats = []
        for p in procs:
            try:
                data, _ = await asyncio.wait_for(p.communicate(), 60)
                wstats.append(json.loads(data.decode().strip().splitlines()[-1]))
            except (TimeoutError, ValueError, IndexError):
                p.kill()
        await server.stop(1.0)
    if wstats:
        out["workers_cpu_seconds"] = round(sum(w["cpu_seconds"] for w in wstats), 1)
        out["worker_rss_mb_peak"] = round(max(w["rss_mb"] for w in wstats))
        out["agent_rejects"] = sum(w["rejects"] for w in wstats)
    return out


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        asyncio.run(worker(argv[1], int(argv[2]), int(argv[3])))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=30000)
    p.add_argument("--policies", type=int, default=3000)
    p.add_argument("--namespaces", type=int, default=100)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--changes", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    t = time.perf_counter()
    out = asyncio.run(bench(a))
    out["wall_seconds"] = round(time.perf_counter() - t, 1)
    out["cores"] = os.cpu_count()
    width = max(len(k) for k in out)
    for k, v in out.items():
        print(f"{k:<{width}}  {v}")
    print("JSON " + json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
