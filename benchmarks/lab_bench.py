"""Lab benchmark: change -> enforced, seen by real packets; prints figures.

In a 3-node lab (bridged, kubenet style) running the real pipeline (API
emulator -> controller -> gRPC -> agents -> ipset/iptables), with a server
pod ``web`` on node-0 and a client pod on node-1 (cross-node) and one on
node-0 (same node):

* policy creation: from the POST of a NetworkPolicy denying ``client`` at
  the emulator to the first probe that observes the deny (then the policy
  is deleted and its removal waited for, untimed);
* pod relabel: with a policy allowing only ``app=client``, from the PUT that
  relabels the client (alternately out of and into ``app=client``) to the
  first probe that observes the new verdict;
* the time ``stockade lab run`` takes for all 18 recipe cases.

How "observed" is timed: probes are launched every ``--interval`` seconds
(10 ms) from just before the write is sent, each with a short timeout; the
latency is the *start* time of the earliest probe whose verdict is the new
one (a SYN that was dropped when sent, or one that got through).  So the
figure includes the watch, the controller's compile, the gRPC push, the
agent's restore and the kernel, and has a resolution of ``--interval``.
Target: p99 <= 1 s.  Prints figures only (no pass/fail).

    sudo python benchmarks/lab_bench.py [--changes 50] [--mode bridged|routed] [--skip-recipes]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stockade import cases
from stockade.cases import ObjectOp, PodDecl, PortDecl
from stockade.lab.cluster import Lab
from stockade.lab.pipeline import Pipeline
from stockade.lab.runner import apply_ops

NS = "bench"
WEB = PodDecl(NS, "web", {"app": "web"}, (PortDecl(80, "TCP", "http"),), node=0)
CLIENT = PodDecl(NS, "client", {"app": "client"}, (PortDecl(80, "TCP", "http"),), node=1)
NEIGHBOUR = PodDecl(NS, "neighbour", {"app": "client"}, (PortDecl(80, "TCP", "http"),), node=0)


def policy(name: str, peers: list[dict[str, Any]] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}
    spec["ingress"] = [{"from": peers}] if peers is not None else []
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


async def first_observed(lab: Lab, src: str, want: str, t0: float, interval: float,
                         probe_timeout: float, give_up: float = 10.0) -> float:
    """Seconds from ``t0`` to the start of the earliest probe src -> web
    whose verdict is ``want``."""
    loop = asyncio.get_running_loop()
    tasks: list[tuple[float, asyncio.Task[str | None]]] = []

    async def one() -> str | None:
        [o] = await lab.prober.probe_all([lab.probe_of(src, f"{NS}/web", 80, "TCP")], timeout=probe_timeout)
        return o.observed

    hit: float | None = None
    while hit is None:
        now = loop.time()
        if now - t0 > give_up:
            raise TimeoutError(f"{src}: no {want} within {give_up} s")
        tasks.append((now, asyncio.create_task(one())))
        await asyncio.sleep(interval)
        for start, t in tasks:
            if t.done() and t.result() == want and (hit is None or start < hit):
                hit = start
    # probes started before the hit may still be out: they could be earlier hits
    await asyncio.gather(*(t for s, t in tasks if s < hit))
    for start, t in tasks:
        if start < hit and t.result() == want:
            hit = start
    for _, t in tasks:
        t.cancel()
    await asyncio.gather(*(t for _, t in tasks), return_exceptions=True)
    return max(0.0, hit - t0)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    lab = Lab(3, args.mode, probe_timeout=1.0)
    pipe = Pipeline(lab)
    out: dict[str, Any] = {"nodes": 3, "mode": args.mode, "changes": args.changes,
                           "interval_s": args.interval}
    try:
        await lab.up()
        await pipe.start()
        plan = cases.AddressPlan(3)
        ops = [ObjectOp("Node", "", cases.node_name(i), cases.node_object(i)) for i in range(3)]
        ops.append(ObjectOp("Namespace", "", NS, cases.namespace_object(NS, {"kubernetes.io/metadata.name": NS})))
        pods = {}
        for p in (WEB, CLIENT, NEIGHBOUR):
            ip = plan.add_pod(p)
            pods[p.name] = (p, ip)
            ops.append(ObjectOp("Pod", NS, p.name, cases.pod_object(p, ip, plan.pod_nodes[p.key])))
        await pipe.wait_converged(await apply_ops(lab, pipe, ops))
        loop = asyncio.get_running_loop()

        # 1. policy creation -> first denied probe (alternating cross-node / same-node client)
        create: list[float] = []
        deny_all = ObjectOp("NetworkPolicy", NS, "deny", policy("deny", None))
        for i in range(args.changes):
            src = f"{NS}/client" if i % 2 == 0 else f"{NS}/neighbour"
            t0 = loop.time()
            watch = asyncio.create_task(first_observed(lab, src, "deny", t0, args.interval, args.probe_timeout))
            await pipe.write([deny_all])
            create.append(await watch)
            await pipe.wait_converged(await pipe.write([ObjectOp("NetworkPolicy", NS, "deny", None)]))
        out["policy_create"] = create

        # 2. pod relabel -> first probe with the new verdict
        clients = ObjectOp("NetworkPolicy", NS, "clients",
                           policy("clients", [{"podSelector": {"matchLabels": {"app": "client"}}}]))
        await pipe.wait_converged(await pipe.write([clients]))
        relabel: list[tuple[str, float]] = []
        p, ip = pods["client"]
        for i in range(args.changes):
            label = "other" if i % 2 == 0 else "client"
            want = "deny" if label == "other" else "allow"
            obj = cases.pod_object(PodDecl(NS, "client", {"app": label}, p.ports, 1), ip, 1)
            t0 = loop.time()
            watch = asyncio.create_task(first_observed(lab, f"{NS}/client", want, t0, args.interval,
                                                       args.probe_timeout))
            await pipe.write([ObjectOp("Pod", NS, "client", obj)])
            relabel.append((want, await watch))
            await pipe.wait_converged()
        out["pod_relabel"] = [x for _, x in relabel]
        out["pod_relabel_to_deny"] = [x for w, x in relabel if w == "deny"]
        out["pod_relabel_to_allow"] = [x for w, x in relabel if w == "allow"]
    finally:
        await pipe.close()
        await lab.down()
    return out


def recipes_time(mode: str) -> dict[str, Any]:
    from stockade.lab import recipes

    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "lab", "run", "--mode", mode,
                        str(recipes.directory())], capture_output=True, text=True, timeout=900)
    took = time.monotonic() - t0
    doc = json.loads(r.stdout) if r.stdout.strip() else {}
    return {"seconds": round(took, 1), "exit": r.returncode, "passed": doc.get("passed"),
            "failed": doc.get("failed"), "cases": len(doc.get("cases", []))}


def summary(xs: list[float]) -> str:
    return (f"n={len(xs)}  p50={statistics.median(xs) * 1000:.0f} ms  p99={pct(xs, 99) * 1000:.0f} ms  "
            f"max={max(xs) * 1000:.0f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--mode", choices=("bridged", "routed"), default="bridged")
    ap.add_argument("--interval", type=float, default=0.01, help="seconds between probe launches")
    ap.add_argument("--probe-timeout", type=float, default=0.2, help="a probe with no answer by then is a deny")
    ap.add_argument("--skip-recipes", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("lab_bench: needs root", file=sys.stderr)
        return 2
    res = asyncio.run(bench(args))
    print(f"lab benchmark: 3 nodes, {args.mode}, real pipeline, probes every {args.interval * 1000:.0f} ms")
    print(f"  policy created -> enforced (first denied probe):   {summary(res['policy_create'])}")
    print(f"  pod relabeled  -> enforced (first probe, new verdict): {summary(res['pod_relabel'])}")
    print(f"      of which to deny:  {summary(res['pod_relabel_to_deny'])}")
    print(f"      of which to allow: {summary(res['pod_relabel_to_allow'])}")
    worst = max(pct(res["policy_create"], 99), pct(res["pod_relabel"], 99))
    print(f"  target p99 <= 1 s: {'met' if worst <= 1.0 else 'NOT met'} (worst p99 {worst * 1000:.0f} ms)")
    if not args.skip_recipes:
        rt = recipes_time(args.mode)
        res["recipes"] = rt
        print(f"  stockade lab run (18 recipe cases): {rt['seconds']} s, exit {rt['exit']}, "
              f"{rt['passed']} probes passed, {rt['failed']} failed")
    if args.json:
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
