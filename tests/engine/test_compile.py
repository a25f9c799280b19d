"""Compile tests: set contents and names, rule layout, span, sharing, options."""

from __future__ import annotations

import pytest

from controller import naming
from controller.compile_policy import CompileSettings, block_set
from controller.engine import Engine
from controller.model import ContainerPort, IPBlock, NetworkPolicy, Pod
from stockade.state import MAX_CHAIN_NAME, MAX_SET_NAME, count, digest, render_rule
from stockade.state_validation import validate
from tests.engine.builders import block, ns, peer, pod, policy, port, rule, sel


@pytest.mark.parametrize(("cidr", "excepts", "members", "nomatch"), [
    pytest.param("10.0.0.0/8", (), {"10.0.0.0/8"}, set(), id="plain"),
    pytest.param("10.0.0.0/8", ("10.1.0.0/16", "10.2.3.4/32"), {"10.0.0.0/8"}, {"10.1.0.0/16", "10.2.3.4"},
                 id="excepts-as-nomatch-host-without-prefix"),
    pytest.param("0.0.0.0/0", ("10.0.0.0/8",), {"0.0.0.0/1", "128.0.0.0/1"}, {"10.0.0.0/8"}, id="slash-zero-halves"),
    pytest.param("::/0", (), {"::/1", "8000::/1"}, set(), id="v6-slash-zero"),
    pytest.param("10.0.0.5/32", (), {"10.0.0.5"}, set(), id="host-block"),
    pytest.param("0.0.0.0/0", ("0.0.0.0/1",), {"128.0.0.0/1"}, set(), id="except-equals-half"),
])
def test_ip_block_sets(cidr: str, excepts: tuple[str, ...], members: set[str], nomatch: set[str]) -> None:
    s = block_set(IPBlock(cidr, excepts))
    assert (set(s.members), set(s.nomatch)) == (members, nomatch)
    assert s.type == "hash:net" and s.name.startswith("stk4n-" if ":" not in cidr else "stk6n-")


WEB = sel({"app": "web"})
PODS = [pod("a/web", "n1", "10.0.1.1", (ContainerPort(80, "TCP", "http"),), app="web"),
        pod("a/web2", "n2", "10.0.2.1", (ContainerPort(8080, "TCP", "http"),), app="web"),
        pod("a/cli", "n2", "10.0.2.2", app="cli"),
        pod("a/host", "n3", "192.168.0.3", host_network=True, app="web")]


def engine(*pols: NetworkPolicy, pods: list[Pod] = PODS, settings: CompileSettings | None = None) -> Engine:
    e = Engine(settings)
    e.set_namespace(ns("a"))
    for p in pods:
        e.set_pod(p)
    for pol in pols:
        e.set_policy(pol)
    for st in e.flush().values():
        validate(st)
    return e


def rules_of(e: Engine, node: str) -> list[str]:
    st = e.node_state(node)
    return [f"{c.name} {' '.join(render_rule(r))}" for c in st.v4.chains.values() for r in c.rules]


def test_names_fit_the_kernel_and_prefixes() -> None:
    e = engine(policy("a/" + "x" * 200, WEB, ingress=(rule(peer(sel({"app": "cli"})), ports=(port("http"),)),),
                      egress=(rule(block("10.0.0.0/8")),)))
    st = e.node_state("n1")
    assert all(n.startswith("stk") and len(n) <= MAX_SET_NAME for n in st.sets)
    assert all(n.startswith("STOCKADE-") and len(n) <= MAX_CHAIN_NAME for n in st.v4.chains)
    assert any(r.comment.startswith("a/xxx") for c in st.v4.chains.values() for r in c.rules)
    assert all(len(r.comment) <= 255 for c in st.v4.chains.values() for r in c.rules)


def test_span_policy_only_on_nodes_with_selected_pods_and_base_state_elsewhere() -> None:
    e = engine(policy("a/cli", sel({"app": "cli"}), ingress=()))
    assert e.policy_info("a/cli") == (["a/cli"], ["n2"], [])
    assert not any(n.startswith("STOCKADE-I-") for n in e.node_state("n1").v4.chains)
    assert e.node_state("n1").sets["stk4-iso-ingress"].members == frozenset()
    assert e.node_state("n2").sets["stk4-iso-ingress"].members == {"10.0.2.2"}
    # a node known only from pods has a state; an unknown node gets the base state
    assert set(e.node_state("nowhere").v4.chains) == {naming.FORWARD_CHAIN, naming.INPUT_CHAIN,
                                                     naming.EGRESS_CHAIN, naming.INGRESS_CHAIN}
    assert e.nodes() == ["n1", "n2", "n3"]


def test_hostnetwork_pods_are_never_selected() -> None:
    e = engine(policy("a/web", WEB, ingress=()))
    assert e.policy_info("a/web")[0] == ["a/web", "a/web2"]
    assert e.node_state("n3").sets["stk4-iso-ingress"].members == frozenset()


def test_named_port_set_resolves_per_pod() -> None:
    e = engine(policy("a/web", WEB, ingress=(rule(ports=(port("http"),)),)))
    st = e.node_state("n1")
    (q,) = [s for n, s in st.sets.items() if n.startswith("stk4q-")]
    assert q.members == {"10.0.1.1,tcp:80", "10.0.2.1,tcp:8080"}


def test_equal_selectors_share_one_set_object_across_policies_and_nodes() -> None:
    from_cli = rule(peer(sel({"app": "cli"})))
    e = engine(policy("a/p1", WEB, ingress=(from_cli,)), policy("a/p2", WEB, ingress=(from_cli,), egress=()))
    s1, s2 = e.node_state("n1"), e.node_state("n2")
    peers1 = {n: s for n, s in s1.sets.items() if n.startswith("stk4p-")}
    assert len(peers1) == 1
    (name,) = peers1
    assert s2.sets[name] is s1.sets[name]
    assert s1.v4 is s2.v4  # both nodes host pods of the same selected groups: one shared bundle


def test_rules_grow_with_policies_not_pods() -> None:
    pols = (policy("a/web", WEB, ingress=(rule(peer(sel({"app": "cli"})), ports=(port(80), port("http"))),)),)
    small = count(engine(*pols).node_state("n1"))
    many = PODS + [pod(f"a/cli{i}", "n1", f"10.0.9.{i}", app="cli") for i in range(50)] + \
        [pod(f"a/web{i}", "n1", f"10.0.8.{i}", app="web") for i in range(50)]
    big = count(engine(*pols, pods=many).node_state("n1"))
    assert big["rules"] == small["rules"] and big["chains"] == small["chains"]
    assert big["members"] > small["members"] + 100


def test_invalid_policy_replacing_a_valid_one_stops_applying() -> None:
    pol = policy("a/web", WEB, ingress=())
    e = engine(pol)
    assert e.node_state("n1").sets["stk4-iso-ingress"].members == {"10.0.1.1"}
    e.set_invalid_policy("a/web", ["spec.ingress[0].from[0].ipBlock.cidr: bad"])
    assert set(e.flush()) == {"n1", "n2"}
    assert e.node_state("n1").sets["stk4-iso-ingress"].members == frozenset()
    assert e.policy_info("a/web") == ([], [], ["spec.ingress[0].from[0].ipBlock.cidr: bad"])
    assert [(s.key, s.valid) for s in e.policies()] == [("a/web", False)]
    e.set_policy(pol)
    assert e.policy_info("a/web")[2] == [] and e.stats()["invalid_policies"] == 0
    e.remove_policy("a/web")
    with pytest.raises(KeyError):
        e.policy_info("a/web")


def test_dual_stack_only_when_the_cluster_has_ipv6() -> None:
    e = engine(policy("a/web", WEB, ingress=()))
    assert not e.node_state("n1").v6.chains
    e.set_pod(pod("a/web", "n1", ("10.0.1.1", "fd00::1"), app="web"))
    e.flush()
    st = e.node_state("n1")
    validate(st)
    assert st.v6.chains and st.sets["stk6-iso-ingress"].members == {"fd00::1"}
    assert st.sets["stk4-iso-ingress"].members == {"10.0.1.1"}
    e.remove_pod("a/web")
    e.flush()
    assert not e.node_state("n2").v6.chains


def test_layout_marks_and_nflog_option() -> None:
    s = CompileSettings(egress_mark=0x1000000, ingress_mark=0x2000000, nflog_group=5)
    e = engine(policy("a/web", WEB, ingress=(rule(),)), settings=s)
    rules = rules_of(e, "n1")
    assert "STOCKADE-FORWARD -m comment --comment stockade: clear policy bits -j MARK --set-xmark 0x0/0x3000000" in rules
    assert any("-j NFLOG" in r and "--nflog-group 5" in r and r.startswith("STOCKADE-INGRESS") for r in rules)
    assert not any("ACCEPT" in r for r in rules)
    ingress = [r for r in rules if r.startswith("STOCKADE-INGRESS")]
    assert "-j STOCKADE-I-" in ingress[0] and ingress[-1].endswith("-j DROP")


@pytest.mark.parametrize(("kwargs", "field"), [
    pytest.param({"egress_mark": 0x3}, "egress_mark", id="two-bits"),
    pytest.param({"ingress_mark": 0}, "ingress_mark", id="zero"),
    pytest.param({"egress_mark": 0x100, "ingress_mark": 0x100}, "ingress_mark", id="same-bit"),
])
def test_bad_settings_name_the_field(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=f"CompileSettings.{field}"):
        CompileSettings(**kwargs)  # type: ignore[arg-type]


def test_replicas_compute_identical_states() -> None:
    pols = [policy("a/web", WEB, ingress=(rule(peer(sel({"app": "cli"}))),), egress=(rule(block("10.0.0.0/8")),)),
            policy("a/all", ingress=())]
    a, b = engine(*pols), engine(*reversed(pols), pods=list(reversed(PODS)))
    assert {n: digest(a.node_state(n)) for n in a.nodes()} == {n: digest(b.node_state(n)) for n in b.nodes()}
