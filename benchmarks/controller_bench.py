"""Controller benchmark: the real process against the real API emulator.

Prints figures; it is not a test.  The emulator runs in this process (its
store is seeded directly, so seeding costs no HTTP); ``stockade controller``
runs as a subprocess, so its CPU is its own, and is measured only through
its HTTP side (``/readyz``, ``/api/v1/status``, ``/metrics``).

Cluster: ``--pods`` pods over ``--namespaces`` namespaces and ``--nodes``
nodes, labels ``app: a<i % 10>``, two policies per namespace (ingress to
``app=a0`` from ``app=a1``; egress from ``app=a2`` to namespaces labelled
``team=t<j % 5>``).

Figure 1: seconds from process start to ``/readyz`` 200 (list of every kind,
first compute of every node).
Figure 2: event-to-send latency for ``--changes`` pod label changes written
through the API one at a time (``stockade_event_to_send_seconds``: from the
watch line's arrival to the publishing of the changed node states), as
the histogram's mean and bucket-interpolated p50/p99; plus the wall time
from the API write until ``/metrics`` shows the change applied by the
writer (``stockade_writer_batch_changes_sum`` moved), median and max.
Figure 3: four forced 410s after a clean cut of every watch (the emulator
gives them to the next four list/watch requests, whichever kinds ask
first): seconds until four relists happened and every watch is open
again, and the number of changes the relists forwarded (0: the
reconciliation found nothing new, as it should).

Usage: ``python -m benchmarks.controller_bench [--pods 5000] [--namespaces 100]
[--nodes 50] [--changes 200]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from typing import Any

import aiohttp

from stockade.kubeemu.emulator import KubeEmulator


def seed(emu: KubeEmulator, pods: int, namespaces: int, nodes: int) -> None:
    st = emu.store
    for j in range(namespaces):
        st.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": f"ns{j}", "labels": {"team": f"t{j % 5}"}}})
    for n in range(nodes):
        st.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node{n}"},
                            "spec": {"podCIDR": f"10.{n // 250}.{n % 250}.0/24"},
                            "status": {"addresses": [{"type": "InternalIP", "address": f"192.168.{n // 250}.{n % 250 + 1}"}]}})
    for i in range(pods):
        n = i % nodes
        ns = f"ns{i % namespaces}"
        ip = f"10.{n // 250}.{n % 250}.{(i // nodes) % 250 + 2}" if pods <= nodes * 250 else f"10.{100 + i // 65000}.{(i // 250) % 256}.{i % 250 + 2}"
        st.create("pods", {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": f"p{i}", "namespace": ns, "labels": {"app": f"a{i % 10}"}},
                           "spec": {"nodeName": f"node{n}", "containers": [{"name": "c", "image": "x"}]},
                           "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}, namespace=ns)
    for j in range(namespaces):
        ns = f"ns{j}"
        st.create("networkpolicies", {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "web", "namespace": ns},
            "spec": {"podSelector": {"matchLabels": {"app": "a0"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a1"}}}],
                                  "ports": [{"port": 80, "protocol": "TCP"}]}]}}, namespace=ns)
        st.create("networkpolicies", {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "egress", "namespace": ns},
            "spec": {"podSelector": {"matchLabels": {"app": "a2"}}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": f"t{j % 5}"}}}]}]}}, namespace=ns)


def hist(metrics: str, name: str) -> tuple[float, float, list[tuple[float, float]]]:
    """(sum, count, [(le, cumulative count)]) of a histogram in the exposition text."""
    total = float(re.search(rf"^{name}_sum (\S+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
    count = float(re.search(rf"^{name}_count (\S+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
    buckets = [(float("inf") if le == "+Inf" else float(le), float(v))
               for le, v in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', metrics, re.M)]
    return total, count, buckets


def quantile(buckets: list[tuple[float, float]], base: list[tuple[float, float]], q: float) -> float:
    """Linear interpolation within the bucket holding quantile ``q`` of (buckets - base)."""
    diff = [(le, c - b) for (le, c), (_, b) in zip(buckets, base, strict=True)]
    n = diff[-1][1]
    target, prev_le, prev_c = q * n, 0.0, 0.0
    for le, c in diff:
        if c >= target:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((target - prev_c) / max(c - prev_c, 1e-9))
        prev_le, prev_c = le, c
    return prev_le


async def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="controller_bench")
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--namespaces", type=int, default=100)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--changes", type=int, default=200)
    a = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="stockade-ctl-bench-")
    kc = os.path.join(tmp, "kubeconfig")
    async with KubeEmulator(host="127.0.0.1", port=0, history=max(1000, a.changes * 4)) as emu:
        t = time.monotonic()
        seed(emu, a.pods, a.namespaces, a.nodes)
        print(f"cluster: {a.pods} pods, {a.namespaces} namespaces, {a.nodes} nodes, {2 * a.namespaces} policies "
              f"(seeded in {time.monotonic() - t:.1f}s)")
        emu.write_kubeconfig(kc)
        http = 17801
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stockade", "controller", "--kubeconfig", kc, "--grpc-listen", "127.0.0.1:0",
            "--http-listen", f"127.0.0.1:{http}", "--replica-id", "bench", "--log-level", os.environ.get("BENCH_LOG", "WARNING"),
            "--insecure-grpc")
        base = f"http://127.0.0.1:{http}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
                while True:
                    try:
                        async with s.get(base + "/readyz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    if time.monotonic() - t0 > 300:
                        raise SystemExit("controller not ready after 300s")
                    await asyncio.sleep(0.02)
                print(f"figure 1: start -> ready: {time.monotonic() - t0:.2f}s")

                async def status() -> Any:
                    async with s.get(base + "/api/v1/status") as r:
                        return await r.json()

                async def metrics() -> str:
                    async with s.get(base + "/metrics") as r:
                        return await r.text()

                async def applied() -> float:
                    """Changes the writer has applied (a cheap read: /metrics, not the status JSON)."""
                    return hist(await metrics(), "stockade_writer_batch_changes")[0]

                m0 = hist(await metrics(), "stockade_event_to_send_seconds")
                walls = []
                for k in range(a.changes):
                    i = (k * 7919) % a.pods
                    ns = f"ns{i % a.namespaces}"
                    before = await applied()
                    obj = emu.store.get("pods", f"p{i}", ns)
                    cur = int(obj["metadata"]["labels"]["app"][1:])
                    obj["metadata"]["labels"] = {"app": f"a{(cur + 1) % 10}"}  # always a real change
                    w0 = time.monotonic()
                    emu.store.update("pods", obj, namespace=ns, name=f"p{i}")
                    while await applied() == before:
                        if time.monotonic() - w0 > 30:
                            raise SystemExit(f"change {k} not applied after 30s")
                        await asyncio.sleep(0.002)
                    walls.append(time.monotonic() - w0)
                m1 = hist(await metrics(), "stockade_event_to_send_seconds")
                n = m1[1] - m0[1]
                print(f"figure 2: {a.changes} pod label changes: event-to-send mean {(m1[0] - m0[0]) / max(n, 1) * 1000:.2f} ms, "
                      f"p50 ~{quantile(m1[2], m0[2], 0.5) * 1000:.2f} ms, p99 ~{quantile(m1[2], m0[2], 0.99) * 1000:.2f} ms "
                      f"({int(n)} observations); API write -> applied by the writer (/metrics polled every 2 ms): "
                      f"median {statistics.median(walls) * 1000:.1f} ms, max {max(walls) * 1000:.1f} ms")
                before = (await status())["writer"]["changes"]
                relists0 = sum(w["relists"] for w in (await status())["watches"])
                t = time.monotonic()
                emu.faults.expire_next(4)
                emu.faults.cut_watches(clean=True)
                while True:
                    st = await status()
                    done = sum(w["relists"] for w in st["watches"]) - relists0
                    if done >= 4 and all(w["connected"] for w in st["watches"]):
                        break
                    if time.monotonic() - t > 60:
                        raise SystemExit("relists did not complete in 60s")
                    await asyncio.sleep(0.01)
                print("figure 3: 4 forced 410s (relists: " + ", ".join(f"{w['kind']} {w['relists']}" for w in st["watches"])
                      + f"): {time.monotonic() - t:.2f}s until every watch is open again; "
                      f"changes forwarded by the relists: {st['writer']['changes'] - before}")
                print(json.dumps({"totals": st["totals"], "distributor": st["distributor"]}))
        finally:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
