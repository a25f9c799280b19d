"""Differential test: the oracle (spec level) == engine + walker (compiled
iptables/ipset semantics) on random clusters, policies and probes.

The engine is also reached through a history: a different random cluster
first, then morphed into the probed one, so incremental paths are compared
against the oracle too.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.compile_policy import CompileSettings
from controller.engine import Engine
from controller.model import Protocol
from stockade.state_validation import validate
from tests.engine.harness import Both
from tests.spec.strategies import RandomCluster, RandomProbe, cluster_and_probes, clusters

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed(e: Engine, c: RandomCluster) -> None:
    for n in c.namespaces:
        e.set_namespace(n)
    for nd in c.nodes:
        e.set_node(nd)
    for p in c.pods:
        e.set_pod(p)
    for pol in c.policies:
        e.set_policy(pol)


def morph(e: Engine, old: RandomCluster, new: RandomCluster) -> None:
    """Apply ``new`` over ``old``: removals of what ``new`` lacks, then sets."""
    keep_pods = {p.key for p in new.pods}
    keep_pols = {p.key for p in new.policies}
    keep_nodes = {n.name for n in new.nodes}
    for p in old.pods:
        if p.key not in keep_pods:
            e.remove_pod(p.key)
    for pol in old.policies:
        if pol.key not in keep_pols:
            e.remove_policy(pol.key)
    for nd in old.nodes:
        if nd.name not in keep_nodes:
            e.remove_node(nd.name)
    feed(e, new)


def check(c: RandomCluster, probes: list[RandomProbe], e: Engine) -> None:
    for state in e.flush().values():
        validate(state)
    b = Both(c.oracle_cluster(), e)
    for pr in probes:
        proto: Protocol = pr.protocol  # type: ignore[assignment]
        d, w = b.walked(pr.src, pr.dst, pr.port, proto, pr.family)
        assert w.allowed == d.allowed, (
            f"{pr}: oracle {d.summary()}\nwalker {'allowed' if w.allowed else 'denied'}:\n" + "\n".join(w.trace)
            + "\npolicies:\n" + "\n".join(repr(p) for p in c.policies))


LAYOUTS = [
    CompileSettings(),
    CompileSettings(egress_mark=0x40000, ingress_mark=0x1, nflog_group=3, families=("inet", "inet6")),
]


@SETTINGS
@given(cluster_and_probes(), st.sampled_from(LAYOUTS))
def test_oracle_equals_walker_over_compiled_state(cp: tuple[RandomCluster, list[RandomProbe]],
                                                  layout: CompileSettings) -> None:
    c, probes = cp
    e = Engine(layout)
    feed(e, c)
    check(c, probes, e)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), cluster_and_probes(), st.booleans())
def test_oracle_equals_walker_after_a_history(first: RandomCluster, cp: tuple[RandomCluster, list[RandomProbe]],
                                              flush_between: bool) -> None:
    c, probes = cp
    e = Engine()
    feed(e, first)
    if flush_between:
        e.flush()
    morph(e, first, c)
    check(c, probes, e)
