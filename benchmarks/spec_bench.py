"""Policy-semantics benchmark: parsing, the oracle, and ``stockade evaluate``.

Prints figures; it is not a test.

* parse: ``controller.parse.parse_pod`` over N pods (3 labels, 2 named
  container ports, from ``stockade.cases.pod_object``) and
  ``parse_policy`` over M policies (ingress with pod, namespace+pod and
  ipBlock-with-except peers; numeric, named and ranged ports; an egress
  rule), as Kubernetes JSON dicts in memory; microseconds per object.
* oracle: ``controller.oracle.decide`` on a cluster of 5,000 pods and
  2,500 policies (the parsed ones above, scaled), random pod pairs;
  microseconds per decision.
* evaluate: ``stockade evaluate`` (oracle + engine + walker) over the
  shared recipes in-process, seconds per case (mean and max).

    python -m benchmarks.spec_bench                # 150,000 pods, 75,000 policies
    python -m benchmarks.spec_bench --scale 0.1    # a tenth
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from controller import evaluate_cli, oracle, parse
from controller.model import Namespace
from stockade import cases

RECIPES = Path(__file__).resolve().parents[2] / "shared" / "cases" / "recipes"


def pod_json(i: int) -> dict[str, Any]:
    d = cases.PodDecl(f"ns-{i % 300}", f"pod-{i}",
                      {"app": f"app-{i % 500}", "tier": ("web", "db", "cache")[i % 3], "hash": f"h{i % 2000}"},
                      (cases.PortDecl(8080, "TCP", "http"), cases.PortDecl(9090, "TCP", "metrics")))
    return cases.pod_object(d, f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", i % 100)


def policy_json(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": f"p-{i}", "namespace": f"ns-{i % 300}"},
        "spec": {
            "podSelector": {"matchLabels": {"app": f"app-{i % 500}"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": "web"}}},
                                  {"namespaceSelector": {"matchLabels": {"team": f"t{i % 20}"}},
                                   "podSelector": {"matchExpressions": [
                                       {"key": "app", "operator": "In", "values": ["a", f"app-{i % 7}"]}]}},
                                  {"ipBlock": {"cidr": "10.0.0.0/8", "except": [f"10.{i % 256}.0.0/16"]}}],
                         "ports": [{"port": 8080}, {"port": "metrics"},
                                   {"port": 30000, "endPort": 30100, "protocol": "UDP"}]}],
            "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": 53, "protocol": "UDP"}]}],
        },
    }


def bench_parse(n_pods: int, n_pol: int) -> tuple[list[Any], list[Any]]:
    pods_raw = [pod_json(i) for i in range(n_pods)]
    pols_raw = [policy_json(i) for i in range(n_pol)]
    t = time.perf_counter()
    pods = [parse.parse_pod(p) for p in pods_raw]
    tp = time.perf_counter() - t
    t = time.perf_counter()
    pols = [parse.parse_policy(p) for p in pols_raw]
    tq = time.perf_counter() - t
    print(f"parse_pod:    {n_pods:>7} pods      {tp:6.2f} s  {tp / n_pods * 1e6:6.1f} us/pod")
    print(f"parse_policy: {n_pol:>7} policies  {tq:6.2f} s  {tq / n_pol * 1e6:6.1f} us/policy")
    return pods, pols


def bench_oracle(pods: list[Any], pols: list[Any], n: int) -> None:
    namespaces = [Namespace(f"ns-{i}", {"team": f"t{i % 20}"}) for i in range(300)]
    cluster = oracle.Cluster(namespaces, pods[:5000], (), pols[:2500])
    keys = [p.key for p in pods[:5000]]
    rnd = random.Random(1)
    pairs = [(rnd.choice(keys), rnd.choice(keys)) for _ in range(n)]
    t = time.perf_counter()
    allowed = sum(oracle.decide(cluster, s, d, 8080).allowed for s, d in pairs)
    dt = time.perf_counter() - t
    print(f"oracle.decide: {n} decisions over {len(cluster.pods)} pods / {len(cluster.policies)} policies "
          f"{dt / n * 1e6:8.1f} us/decision ({allowed} allowed)")


def bench_evaluate() -> None:
    if not RECIPES.is_dir():
        print(f"evaluate: skipped ({RECIPES} not found)")
        return
    times = []
    for f in sorted(RECIPES.glob("*.json")):
        out, err = io.StringIO(), io.StringIO()
        t = time.perf_counter()
        with redirect_stdout(out), redirect_stderr(err):
            rc = evaluate_cli.main([str(f)])
        times.append(time.perf_counter() - t)
        if rc != 0:
            print(f"evaluate: {f.name} exited {rc}: {err.getvalue().strip()}")
    print(f"evaluate: {len(times)} recipe cases, mean {statistics.mean(times) * 1e3:.1f} ms/case, "
          f"max {max(times) * 1e3:.1f} ms/case (oracle + engine + walker, in-process)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of 150,000 pods / 75,000 policies")
    ap.add_argument("--decisions", type=int, default=2000)
    a = ap.parse_args()
    pods, pols = bench_parse(max(1, int(150_000 * a.scale)), max(1, int(75_000 * a.scale)))
    bench_oracle(pods, pols, a.decisions)
    bench_evaluate()


if __name__ == "__main__":
    main()
