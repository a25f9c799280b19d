"""The random generators reach every feature, and oracle properties that
must hold on any cluster they draw."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.model import NetworkPolicy, Pod
from controller.oracle import Cluster, decide
from controller.parse import parse_policy
from tests.spec.strategies import RandomCluster, RandomProbe, cluster_and_probes, clusters

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rules(c: RandomCluster) -> list[Any]:
    return [r for p in c.policies for r in (*p.ingress, *p.egress)]


def _peers(c: RandomCluster) -> list[Any]:
    return [pe for r in _rules(c) for pe in r.peers]


def _ports(c: RandomCluster) -> list[Any]:
    return [pt for r in _rules(c) for pt in r.ports]


def _pods(c: RandomCluster, pred: Callable[[Pod], bool]) -> bool:
    return any(pred(p) for p in c.pods)


def _raw_selectors(c: RandomCluster) -> list[Any]:
    return [o["spec"]["podSelector"] for o in c.policy_objects]


FEATURES: list[Any] = [
    pytest.param(lambda c: any(isinstance(pt.port, str) for pt in _ports(c)), id="named-port"),
    pytest.param(lambda c: any(pt.end_port for pt in _ports(c)), id="end-port"),
    pytest.param(lambda c: any(pt.protocol == "SCTP" for pt in _ports(c)), id="sctp"),
    pytest.param(lambda c: any(pe.ip_block and pe.ip_block.excepts for pe in _peers(c)), id="ipblock-except"),
    pytest.param(lambda c: any(pe.ip_block and ":" in pe.ip_block.cidr for pe in _peers(c)), id="ipblock-v6"),
    pytest.param(lambda c: any(pe.namespace_selector is not None and pe.pod_selector is not None
                               and not pe.pod_selector.is_empty for pe in _peers(c)), id="ns-and-pod-selector"),
    pytest.param(lambda c: any(pe.namespace_selector is not None and pe.namespace_selector.is_empty
                               for pe in _peers(c)), id="all-namespaces"),
    pytest.param(lambda c: any(r.operator == "In" for p in c.policies for r in p.pod_selector.expressions),
                 id="op-in"),
    pytest.param(lambda c: any(r.operator == "NotIn" for p in c.policies for r in p.pod_selector.expressions),
                 id="op-notin"),
    pytest.param(lambda c: any(r.operator == "Exists" for p in c.policies for r in p.pod_selector.expressions),
                 id="op-exists"),
    pytest.param(lambda c: any(r.operator == "DoesNotExist" for p in c.policies
                               for r in p.pod_selector.expressions), id="op-doesnotexist"),
    pytest.param(lambda c: any(s == {"matchLabels": None} for s in _raw_selectors(c)), id="null-match-labels"),
    pytest.param(lambda c: any(p.policy_types == ("Ingress", "Egress") and "policyTypes" not in o["spec"]
                               for p, o in zip(c.policies, c.policy_objects, strict=True)), id="inferred-egress"),
    pytest.param(lambda c: any(p.policy_types == ("Egress",) and p.ingress
                               for p in c.policies), id="egress-only-with-ingress-rules"),
    pytest.param(lambda c: any(not r.peers for r in _rules(c)), id="rule-any-peer"),
    pytest.param(lambda c: _pods(c, lambda p: p.host_network), id="host-network-pod"),
    pytest.param(lambda c: _pods(c, lambda p: p.phase in ("Succeeded", "Failed")), id="finished-pod"),
    pytest.param(lambda c: _pods(c, lambda p: not p.ips), id="pod-without-ip"),
    pytest.param(lambda c: _pods(c, lambda p: len(p.ips) == 2 and not p.host_network), id="dual-stack-pod"),
    pytest.param(lambda c: len({pt.port for p in c.pods for pt in p.ports if pt.name == "http"}) == 2,
                 id="same-port-name-different-numbers"),
]


def test_generator_reaches_every_feature() -> None:
    """One deterministic run of the generator meets every feature."""
    seen: set[str] = set()
    v6_host_probe = []

    @settings(max_examples=400, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(cluster_and_probes())
    def run(cp: tuple[RandomCluster, list[RandomProbe]]) -> None:
        c, probes = cp
        seen.update(f.id for f in FEATURES if f.values[0](c))
        v6_host_probe.extend(p for p in probes if p.family == 6 and "/" not in p.src)

    run()
    assert sorted(f.id for f in FEATURES if f.id not in seen) == []
    assert v6_host_probe


@FAST
@given(cluster_and_probes())
def test_generated_probes_are_decidable_and_consistent(cp: tuple[RandomCluster, list[RandomProbe]]) -> None:
    c, probes = cp
    oc = c.oracle_cluster()
    empty = Cluster(c.namespaces, c.pods, c.nodes)
    for p in probes:
        d = decide(oc, p.src, p.dst, p.port, p.protocol, p.family)  # type: ignore[arg-type]
        assert d.allowed == (d.egress.allowed and d.ingress.allowed)
        for side in (d.egress, d.ingress):
            assert side.isolated == bool(side.policies)
            if not side.isolated:
                assert side.allowed
            assert {r.policy for r in side.allowed_by} <= set(side.policies)
        assert decide(empty, p.src, p.dst, p.port, p.protocol, p.family).allowed  # type: ignore[arg-type]


def _allow_all(ns: str, name: str) -> NetworkPolicy:
    return parse_policy({"metadata": {"name": name, "namespace": ns},
                         "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                                  "ingress": [{}], "egress": [{}]}})


@FAST
@given(cluster_and_probes(), st.sampled_from(["ns-a", "ns-b", "ns-c"]))
def test_adding_a_policy_never_revokes_what_an_isolated_side_allowed(
        cp: tuple[RandomCluster, list[RandomProbe]], ns: str) -> None:
    """Union: once a side is isolated, another policy can only add rules."""
    c, probes = cp
    before = c.oracle_cluster()
    after = c.oracle_cluster()
    after.set_policy(_allow_all(ns, "zz-open"))
    for p in probes:
        a = decide(before, p.src, p.dst, p.port, p.protocol, p.family)  # type: ignore[arg-type]
        b = decide(after, p.src, p.dst, p.port, p.protocol, p.family)  # type: ignore[arg-type]
        for sa, sb in ((a.egress, b.egress), (a.ingress, b.ingress)):
            if sa.isolated and sa.allowed:
                assert sb.allowed
            assert set(sa.allowed_by) <= set(sb.allowed_by)
    for ns_ in ("ns-a", "ns-b", "ns-c"):
        after.set_policy(_allow_all(ns_, "zz-open"))
    for p in probes:
        assert decide(after, p.src, p.dst, p.port, p.protocol, p.family).allowed  # type: ignore[arg-type]


@FAST
@given(cluster_and_probes())
def test_without_ipblocks_the_family_does_not_matter(cp: tuple[RandomCluster, list[RandomProbe]]) -> None:
    c, probes = cp
    oc = Cluster(c.namespaces, c.pods, c.nodes, [p for p in c.policies
                                                 if not any(pe.ip_block for r in (*p.ingress, *p.egress)
                                                            for pe in r.peers)])
    for p in probes:
        if "/" not in p.src or "/" not in p.dst:
            continue
        verdicts = set()
        for fam in (4, 6):
            try:
                verdicts.add(decide(oc, p.src, p.dst, p.port, p.protocol, fam).allowed)  # type: ignore[arg-type]
            except ValueError:
                continue
        assert len(verdicts) <= 1


@FAST
@given(clusters())
def test_policy_parse_ignores_key_order(c: RandomCluster) -> None:
    for obj, pol in zip(c.policy_objects, c.policies, strict=True):
        shuffled = copy.deepcopy(obj)
        sel = shuffled["spec"]["podSelector"]
        if sel.get("matchLabels"):
            sel["matchLabels"] = dict(reversed(list(sel["matchLabels"].items())))
        if sel.get("matchExpressions"):
            sel["matchExpressions"] = list(reversed(sel["matchExpressions"]))
        shuffled["spec"] = dict(reversed(list(shuffled["spec"].items())))
        assert parse_policy(shuffled) == pol
