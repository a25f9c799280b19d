"""Engine benchmark: full compile and single changes on three synthetic clusters.

Prints figures; it is not a test.  Each workload runs in a fresh
subprocess so its peak RSS (``ru_maxrss``) is its own.

* W1 "many small namespaces" (after Antrea's controller perf test): 25,000
  namespaces (label ``app: <ns>``), 4 pods each (2 ``app-1: scale-1``, 2
  ``app-2: scale-2``, random IPs, random node of 1,000), 3 policies each
  (Ingress+Egress): default-deny-all, np-1 (app-1 from app-1), np-2 (app-2
  from app-2).
* W2 "one namespace, every policy selects every pod": 10,000 pods
  ``app-1: scale-1`` (random node of 1,000), 10,000 policies each selecting
  app-1 with ingress from app-1.
* W3 Kubernetes' scalability limits: 150,000 pods, 5,000 nodes, 5,000
  namespaces (30 pods each, 5 apps/tiers, named ports), 10,000 policies
  (2 per namespace from six templates: default deny, namespace selectors
  for ingress-nginx / monitoring / kube-dns / same-team namespaces,
  matchExpressions, named ports, endPort, ipBlocks with except, egress).

Figure 1 (all): seconds from the objects as Kubernetes JSON dicts in memory
to every node's desired state (``controller.parse`` + ``Engine`` +
``flush``), and peak RSS of the process (generated JSON included).
Figure 2 (W1, W3): ``--changes`` single changes of each kind (pod label
change, pod add, pod delete, policy add, namespace label change): time
from the changed record to the per-node deltas (engine update + ``flush``
+ ``stockade.state.diff`` per changed node; parsing the one object is not
included), median/p99/max wall time, p99 CPU time with and without the
cyclic GC's pauses, and nodes changed; then a full recompute (fresh
engine fed the changed cluster's records + ``flush``) and its ratio to the
single-change figures.  The incremental states are checked against the
full recompute (digests of a sample of nodes).

    python -m benchmarks.engine_bench                 # full scale (minutes)
    python -m benchmarks.engine_bench --scale 0.02    # seconds
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from controller import parse
from controller.engine import Engine
from controller.model import Namespace, NetworkPolicy, Node, Pod
from stockade.state import NodeState, diff, digest

J = dict[str, Any]


# --------------------------------------------------------------------------- JSON builders


def ns_json(name: str, labels: dict[str, str]) -> J:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def node_json(name: str, ip: str) -> J:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def pod_json(ns: str, name: str, labels: dict[str, str], node: str, ip: str, ports: list[J] | None = None) -> J:
    c: J = {"name": "main", "image": "registry.example/app:1"}
    if ports:
        c["ports"] = ports
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "containers": [c]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}


def pol_json(ns: str, name: str, spec: J) -> J:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def ml(**kv: str) -> J:
    return {"matchLabels": dict(kv)}


class IPs:
    """Unique random pod IPs in 10.0.0.0/8."""

    def __init__(self, rnd: random.Random, n: int) -> None:
        self._pool = rnd.sample(range(1, 1 << 24), n + 20000)

    def next(self) -> str:
        x = self._pool.pop()
        return f"10.{x >> 16 & 255}.{x >> 8 & 255}.{x & 255}"


def node_names(n: int) -> list[str]:
    return [f"node-{i}" for i in range(n)]


def node_ip(i: int) -> str:
    return f"172.16.{i >> 8 & 255}.{i & 255}"


# --------------------------------------------------------------------------- workloads


class Workload:
    def __init__(self, scale: float, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.scale = scale
        self.namespaces: list[J] = []
        self.nodes: list[J] = []
        self.pods: list[J] = []
        self.policies: list[J] = []
        self.node_list: list[str] = []
        self.ips: IPs

    def n(self, full: int, least: int = 2) -> int:
        return max(least, round(full * self.scale))

    def add_nodes(self, count: int) -> None:
        self.node_list = node_names(count)
        self.nodes = [node_json(nm, node_ip(i)) for i, nm in enumerate(self.node_list)]

    # single changes (JSON of the changed object)
    def pod_labels(self, pod: J) -> dict[str, str]:
        raise NotImplementedError

    def new_pod(self, i: int) -> J:
        raise NotImplementedError

    def new_policy(self, i: int) -> J:
        raise NotImplementedError

    def ns_labels(self, ns: J) -> dict[str, str]:
        raise NotImplementedError


class W1(Workload):
    def __init__(self, scale: float, seed: int = 1) -> None:
        super().__init__(scale, seed)
        n_ns = self.n(25000)
        self.add_nodes(self.n(1000))
        self.ips = IPs(self.rnd, n_ns * 4)
        both = {"policyTypes": ["Ingress", "Egress"]}
        for i in range(n_ns):
            ns = f"ns-{i}"
            self.namespaces.append(ns_json(ns, {"app": ns}))
            for j in range(4):
                labels = {"app-1": "scale-1"} if j < 2 else {"app-2": "scale-2"}
                self.pods.append(pod_json(ns, f"pod-{j}", labels, self.rnd.choice(self.node_list), self.ips.next()))
            self.policies.append(pol_json(ns, "default-deny-all", {"podSelector": {}, **both}))
            for k in (1, 2):
                sel = ml(**{f"app-{k}": f"scale-{k}"})
                self.policies.append(pol_json(ns, f"np-{k}", {"podSelector": sel, "ingress": [{"from": [{"podSelector": sel}]}], **both}))

    def pod_labels(self, pod: J) -> dict[str, str]:
        return {"app-2": "scale-2"} if "app-1" in pod["metadata"]["labels"] else {"app-1": "scale-1"}

    def new_pod(self, i: int) -> J:
        ns = self.rnd.choice(self.namespaces)["metadata"]["name"]
        return pod_json(ns, f"extra-{i}", {f"app-{1 + i % 2}": f"scale-{1 + i % 2}"},
                        self.rnd.choice(self.node_list), self.ips.next())

    def new_policy(self, i: int) -> J:
        ns = self.rnd.choice(self.namespaces)["metadata"]["name"]
        return pol_json(ns, f"extra-{i}", {"podSelector": ml(**{"app-1": "scale-1"}), "policyTypes": ["Ingress", "Egress"],
                                           "ingress": [{"from": [{"podSelector": ml(**{"app-2": "scale-2"})}]}]})

    def ns_labels(self, ns: J) -> dict[str, str]:
        return {"app": ns["metadata"]["name"] + "-x"}


class W2(Workload):
    def __init__(self, scale: float, seed: int = 2) -> None:
        super().__init__(scale, seed)
        count = self.n(10000)
        self.add_nodes(self.n(1000))
        self.ips = IPs(self.rnd, count)
        self.namespaces.append(ns_json("w2", {"app": "w2"}))
        sel = ml(**{"app-1": "scale-1"})
        for i in range(count):
            self.pods.append(pod_json("w2", f"pod-{i}", {"app-1": "scale-1"}, self.rnd.choice(self.node_list),
                                      self.ips.next()))
            self.policies.append(pol_json("w2", f"np-{i}", {"podSelector": sel, "policyTypes": ["Ingress", "Egress"],
                                                             "ingress": [{"from": [{"podSelector": sel}]}]}))


TIERS = ("frontend", "backend", "db", "batch", "cache")
SPECIAL = ("kube-system", "monitoring", "ingress-nginx")
DNS_PEER = {"namespaceSelector": ml(**{"kubernetes.io/metadata.name": "kube-system"}),
            "podSelector": ml(**{"k8s-app": "kube-dns"})}
DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


def w3_policies(ns: str, i: int, team: str) -> list[J]:
    t = i % 6
    if t == 0:
        return [pol_json(ns, "deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}),
                pol_json(ns, "frontend", {"podSelector": ml(tier="frontend"), "ingress": [{
                    "from": [{"namespaceSelector": ml(**{"kubernetes.io/metadata.name": "ingress-nginx"}),
                              "podSelector": ml(**{"app.kubernetes.io/name": "ingress-nginx"})}],
                    "ports": [{"port": "http"}]}]})]
    if t == 1:
        return [pol_json(ns, "backend", {
                    "podSelector": ml(tier="backend"), "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                        {"key": "tier", "operator": "In", "values": ["frontend", "batch"]}]}}],
                        "ports": [{"port": 9000}]}],
                    "egress": [{"to": [{"podSelector": ml(tier="db")}], "ports": [{"port": "pg"}]},
                               {"to": [DNS_PEER], "ports": DNS_PORTS}]}),
                pol_json(ns, "internet", {
                    "podSelector": ml(app="app-3"), "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [
                        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}}], "ports": [{"port": 443}]},
                        {"to": [DNS_PEER], "ports": DNS_PORTS}]})]
    if t == 2:
        return [pol_json(ns, "db", {"podSelector": ml(tier="db"), "ingress": [
                    {"from": [{"podSelector": ml(tier="backend")},
                              {"namespaceSelector": ml(team=team, env="prod"), "podSelector": ml(tier="backend")}],
                     "ports": [{"port": "pg"}]}]}),
                pol_json(ns, "metrics", {"podSelector": {}, "ingress": [{
                    "from": [{"namespaceSelector": ml(**{"kubernetes.io/metadata.name": "monitoring"}),
                              "podSelector": ml(app="prometheus")}], "ports": [{"port": "metrics"}]}]})]
    if t == 3:
        return [pol_json(ns, "deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
                pol_json(ns, "allow-dns", {"podSelector": {}, "policyTypes": ["Egress"],
                                           "egress": [{"to": [DNS_PEER], "ports": DNS_PORTS}]})]
    if t == 4:
        return [pol_json(ns, "frontend", {"podSelector": ml(tier="frontend"), "ingress": [{
                    "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.255.0.0/16"]}}],
                    "ports": [{"port": 8080, "endPort": 8090}]}]}),
                pol_json(ns, "cache", {"podSelector": ml(tier="cache"), "ingress": [{
                    "from": [{"podSelector": {"matchExpressions": [
                        {"key": "app", "operator": "NotIn", "values": ["app-4"]},
                        {"key": "tier", "operator": "Exists"}]}}],
                    "ports": [{"port": 6379}]}]})]
    return [pol_json(ns, "batch-out", {"podSelector": ml(tier="batch"), "policyTypes": ["Egress"], "egress": [
                {"to": [{"podSelector": {}}, {"ipBlock": {"cidr": "172.16.0.0/12", "except": ["172.16.0.0/16"]}}]},
                {"to": [{"namespaceSelector": ml(team=team), "podSelector": ml(tier="backend")}],
                 "ports": [{"port": "http"}]},
                {"to": [DNS_PEER], "ports": DNS_PORTS}]}),
            pol_json(ns, "batch-in", {"podSelector": ml(tier="batch"), "policyTypes": ["Ingress"]})]


class W3(Workload):
    def __init__(self, scale: float, seed: int = 3) -> None:
        super().__init__(scale, seed)
        n_ns = self.n(5000, 4)
        self.per_ns = 30
        self.add_nodes(self.n(5000))
        self.ips = IPs(self.rnd, n_ns * self.per_ns)
        for i in range(n_ns):
            name = SPECIAL[i] if i < len(SPECIAL) else f"ns-{i}"
            labels = {"kubernetes.io/metadata.name": name, "team": f"team-{i % 50}",
                      "env": ("prod", "staging", "dev")[i % 3]}
            self.namespaces.append(ns_json(name, labels))
            for j in range(self.per_ns):
                self.pods.append(self.w3_pod(i, name, j, f"pod-{j}"))
            self.policies.extend(w3_policies(name, i, labels["team"]))

    def w3_pod(self, i: int, ns: str, j: int, name: str) -> J:
        tier = TIERS[j % 5]
        labels = {"app": f"app-{j % 5}", "tier": tier, "pod-template-hash": f"h{i % 7}{j % 3}"}
        if ns == "kube-system" and j < 4:
            labels = {"k8s-app": "kube-dns"}
        elif ns == "monitoring" and j < 2:
            labels = {"app": "prometheus"}
        elif ns == "ingress-nginx" and j < 6:
            labels = {"app.kubernetes.io/name": "ingress-nginx"}
        ports = {"frontend": [{"name": "http", "containerPort": 8080 + i % 2}],
                 "backend": [{"name": "http", "containerPort": 9000}, {"name": "metrics", "containerPort": 9090}],
                 "db": [{"name": "pg", "containerPort": 5432}, {"name": "metrics", "containerPort": 9187}]}.get(
                     tier, [{"name": "metrics", "containerPort": 9090}])
        return pod_json(ns, name, labels, self.rnd.choice(self.node_list), self.ips.next(), ports)

    def pod_labels(self, pod: J) -> dict[str, str]:
        labels = dict(pod["metadata"]["labels"])
        if "tier" in labels:
            k = (TIERS.index(labels["tier"]) + 1) % 5
            labels.update(tier=TIERS[k], app=f"app-{k}")
        else:
            labels["extra"] = "x"
        return labels

    def new_pod(self, i: int) -> J:
        k = self.rnd.randrange(len(self.namespaces))
        ns = self.namespaces[k]["metadata"]["name"]
        return self.w3_pod(k, ns, self.rnd.randrange(self.per_ns), f"extra-{i}")

    def new_policy(self, i: int) -> J:
        k = self.rnd.randrange(len(self.namespaces))
        ns = self.namespaces[k]
        pols = w3_policies(ns["metadata"]["name"], self.rnd.randrange(6), ns["metadata"]["labels"]["team"])
        p = pols[i % 2]
        p["metadata"]["name"] = f"extra-{i}"
        return p

    def ns_labels(self, ns: J) -> dict[str, str]:
        labels = dict(ns["metadata"]["labels"])
        labels["team"] = f"team-{self.rnd.randrange(50)}"
        labels["env"] = self.rnd.choice(("prod", "staging", "dev"))
        return labels


WORKLOADS: dict[str, Callable[[float], Workload]] = {"W1": W1, "W2": W2, "W3": W3}


# --------------------------------------------------------------------------- measuring


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Records:
    """The cluster as records, kept current through the changes."""

    def __init__(self) -> None:
        self.namespaces: dict[str, Namespace] = {}
        self.nodes: dict[str, Node] = {}
        self.pods: dict[str, Pod] = {}
        self.policies: dict[str, NetworkPolicy] = {}

    def engine(self) -> Engine:
        e = Engine()
        for n in self.namespaces.values():
            e.set_namespace(n)
        for nd in self.nodes.values():
            e.set_node(nd)
        for p in self.pods.values():
            e.set_pod(p)
        for pol in self.policies.values():
            e.set_policy(pol)
        return e


def build(w: Workload, gc_mode: str = "bulk") -> tuple[Engine, Records, dict[str, NodeState], float, float]:
    """(engine, records, states, wall seconds, CPU seconds).  ``gc_mode``
    "bulk": the cyclic GC is off during the bulk load, then the heap is
    frozen (``gc.freeze``) so later collections skip it, as a controller
    does after its first full sync (the engine builds no reference cycles:
    its garbage is freed by reference counting); "auto": Python's default
    GC throughout."""
    if gc_mode == "bulk":
        gc.disable()
    t0 = time.perf_counter()
    c0 = time.process_time()
    r = Records()
    e = Engine()
    for o in w.namespaces:
        ns = parse.parse_namespace(o)
        r.namespaces[ns.name] = ns
        e.set_namespace(ns)
    for o in w.nodes:
        nd = parse.parse_node(o)
        r.nodes[nd.name] = nd
        e.set_node(nd)
    for o in w.pods:
        p = parse.parse_pod(o)
        r.pods[p.key] = p
        e.set_pod(p)
    for o in w.policies:
        pol = parse.parse_policy(o)
        r.policies[pol.key] = pol
        e.set_policy(pol)
    states = e.flush()
    if gc_mode == "bulk":
        gc.freeze()
        gc.enable()
    return e, r, states, time.perf_counter() - t0, time.process_time() - c0


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def changes(w: Workload, e: Engine, r: Records, states: dict[str, NodeState], count: int) -> J:
    rnd = random.Random(7)
    pods_json = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in w.pods}
    out: J = {}

    gc_s = [0.0, 0.0]  # total seconds in the cyclic GC, start of the current pass

    def on_gc(phase: str, info: J) -> None:
        if phase == "start":
            gc_s[1] = time.process_time()
        else:
            gc_s[0] += time.process_time() - gc_s[1]

    gc.callbacks.append(on_gc)

    def timed(apply: Callable[[], None]) -> tuple[float, float, float, int]:
        g0 = gc_s[0]
        t0 = time.perf_counter()
        c0 = time.process_time()
        apply()
        changed = e.flush()
        for n, st in changed.items():
            old = states.get(n)
            if old is not None:
                diff(old, st)
            states[n] = st
        c = time.process_time() - c0
        return time.perf_counter() - t0, c, c - (gc_s[0] - g0), len(changed)

    def run(kind: str, make: Callable[[int], Callable[[], None]]) -> None:
        times: list[float] = []
        cpu: list[float] = []
        nogc: list[float] = []
        nodes: list[int] = []
        for i in range(count):
            t, c, ng, n = timed(make(i))
            times.append(t)
            cpu.append(c)
            nogc.append(ng)
            nodes.append(n)
        out[kind] = {"median_ms": statistics.median(times) * 1e3, "p99_ms": pct(times, 0.99) * 1e3,
                     "cpu_median_ms": statistics.median(cpu) * 1e3, "cpu_p99_ms": pct(cpu, 0.99) * 1e3,
                     "cpu_nogc_p99_ms": pct(nogc, 0.99) * 1e3,
                     "max_ms": max(times) * 1e3, "nodes_changed_mean": statistics.mean(nodes),
                     "nodes_changed_max": max(nodes)}

    def label_change(i: int) -> Callable[[], None]:
        key = rnd.choice(list(pods_json))
        pj = pods_json[key]
        pj["metadata"]["labels"] = w.pod_labels(pj)
        p = parse.parse_pod(pj)
        r.pods[key] = p
        return lambda: e.set_pod(p)

    def pod_add(i: int) -> Callable[[], None]:
        pj = w.new_pod(i)
        p = parse.parse_pod(pj)
        pods_json[p.key] = pj
        r.pods[p.key] = p
        return lambda: e.set_pod(p)

    def pod_delete(i: int) -> Callable[[], None]:
        key = rnd.choice(list(pods_json))
        del pods_json[key]
        del r.pods[key]
        return lambda: e.remove_pod(key)

    def policy_add(i: int) -> Callable[[], None]:
        pol = parse.parse_policy(w.new_policy(i))
        r.policies[pol.key] = pol
        return lambda: e.set_policy(pol)

    def ns_label(i: int) -> Callable[[], None]:
        nj = rnd.choice(w.namespaces)
        nj["metadata"]["labels"] = w.ns_labels(nj)
        ns = parse.parse_namespace(nj)
        r.namespaces[ns.name] = ns
        return lambda: e.set_namespace(ns)

    for kind, make in (("pod label change", label_change), ("pod add", pod_add), ("pod delete", pod_delete),
                       ("policy add", policy_add), ("namespace label change", ns_label)):
        run(kind, make)
    gc.callbacks.remove(on_gc)
    gc.disable()
    t0 = time.perf_counter()
    fresh = r.engine()
    fresh_states = fresh.flush()
    full = time.perf_counter() - t0
    gc.enable()
    out["full recompute_s"] = full
    sample = rnd.sample(sorted(fresh_states), min(100, len(fresh_states)))
    out["checked_nodes"] = len(sample)
    out["digests_equal"] = all(digest(fresh_states[n]) == digest(e.node_state(n)) for n in sample) and \
        sorted(fresh_states) == e.nodes()
    return out


def child(name: str, scale: float, count: int, gc_mode: str) -> J:
    w = WORKLOADS[name](scale)
    gc.collect()
    gc.freeze()  # the generated input is not the engine's heap
    before = rss_mib()
    e, r, states, secs, cpu = build(w, gc_mode)
    res: J = {"workload": name, "scale": scale, "namespaces": len(w.namespaces), "nodes": len(e.nodes()),
              "pods": len(w.pods), "policies": len(w.policies), "build_s": secs, "build_cpu_s": cpu,
              "gc": gc_mode, "rss_before_mib": before,
              "peak_rss_mib": rss_mib(), "stats": e.stats(), "states": len(states),
              "rules_per_node_max": max(sum(len(c.rules) for c in st.v4.chains.values()) for st in states.values()),
              "sets_per_node_max": max(len(st.sets) for st in states.values())}
    if count and name != "W2":
        res["changes"] = changes(w, e, r, states, count)
    return res


def report(res: J) -> None:
    print(f"\n{res['workload']} (scale {res['scale']}): {res['namespaces']} namespaces, {res['nodes']} nodes, "
          f"{res['pods']} pods, {res['policies']} policies")
    print(f"  JSON -> every node's state: {res['build_s']:.2f} s wall, {res['build_cpu_s']:.2f} s CPU (gc {res['gc']}); "
          f"peak RSS {res['peak_rss_mib']:.0f} MiB "
          f"(after generating the JSON: {res['rss_before_mib']:.0f} MiB)")
    print(f"  per node at most: {res['rules_per_node_max']} IPv4 rules, {res['sets_per_node_max']} sets; "
          f"engine: {res['stats']}")
    ch = res.get("changes")
    if not ch:
        return
    full = ch["full recompute_s"]
    print(f"  full recompute (fresh engine on the changed cluster): {full:.2f} s; "
          f"states checked against it on {ch['checked_nodes']} nodes: {'equal' if ch['digests_equal'] else 'DIFFERENT'}")
    print(f"  {'single change':<24}{'median ms':>10}{'p99 ms':>9}{'max ms':>9}{'CPU p99':>9}{'no GC':>7}"
          f"{'nodes (mean/max)':>18}{'full/median':>13}{'full/p99':>10}")
    for kind, v in ch.items():
        if not isinstance(v, dict):
            continue
        print(f"  {kind:<24}{v['median_ms']:>10.3f}{v['p99_ms']:>9.3f}{v['max_ms']:>9.3f}{v['cpu_p99_ms']:>9.3f}"
              f"{v['cpu_nogc_p99_ms']:>7.2f}"
              f"{v['nodes_changed_mean']:>11.1f}/{v['nodes_changed_max']:<6}"
              f"{full * 1e3 / max(v['median_ms'], 1e-6):>13.0f}{full * 1e3 / max(v['p99_ms'], 1e-6):>10.0f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="engine_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full workload sizes (default 1)")
    ap.add_argument("--workloads", default="W1,W2,W3", help="comma-separated subset of W1,W2,W3")
    ap.add_argument("--changes", type=int, default=200, help="single changes of each kind (W1, W3); 0: none")
    ap.add_argument("--json", action="store_true", help="print raw JSON results too")
    ap.add_argument("--gc", choices=("bulk", "auto"), default="bulk",
                    help="bulk: GC off during the bulk load, one collection at its end (timed), heap frozen; "
                         "auto: Python's default GC")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.scale, a.changes, a.gc)))
        return 0
    for name in a.workloads.split(","):
        cmd = [sys.executable, "-m", "benchmarks.engine_bench", "--child", name, "--scale", str(a.scale),
               "--changes", str(a.changes), "--gc", a.gc]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr}", file=sys.stderr)
            return 1
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        report(res)
        if a.json:
            print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
