"""The packet walker over compiled state, checked against hand-written
verdicts and against the oracle; plus the walker's own iptables/ipset
semantics on hand-made states."""

from __future__ import annotations

import pytest

from controller.model import ContainerPort, NetworkPolicy
from controller.walker import Packet, WalkError, walk
from stockade.state import Chain, FamilyState, Hook, IPSet, NodeState, Rule, SetMatch
from tests.engine.builders import block, node, ns, peer, pod, policy, port, rule, sel
from tests.engine.harness import both

NAMESPACES = [ns("a"), ns("b", team="x"), ns("c", team="y")]
NODES = [node("n1", "192.168.0.1"), node("n2", "192.168.0.2"), node("n3", "192.168.0.3")]
HTTP = (ContainerPort(8080, "TCP", "http"),)
HTTP2 = (ContainerPort(9090, "TCP", "http"),)
PODS = [
    pod("a/web", "n1", "10.0.1.1", HTTP, app="web"),
    pod("a/web2", "n2", "10.0.2.1", HTTP2, app="web"),
    pod("a/db", "n2", "10.0.2.2", (ContainerPort(5432, "TCP", "pg"),), app="db"),
    pod("b/cli", "n1", "10.0.1.2", app="cli"),
    pod("c/cli", "n3", "10.0.3.1", app="cli"),
    pod("a/hostnet", "n3", "192.168.0.3", host_network=True, app="web"),
    pod("a/done", "n3", "10.0.3.9", phase="Succeeded", app="web"),
]
OUTSIDE = "203.0.113.7"

DENY_ALL = policy("a/deny", ingress=(), egress=())
WEB_FROM_B = policy("a/web-from-b", sel({"app": "web"}),
                    ingress=(rule(peer(None, sel({"team": "x"}))),))
DB_FROM_WEB_PG = policy("a/db", sel({"app": "db"}), ingress=(rule(peer(sel({"app": "web"})), ports=(port("pg"),)),))
WEB_NAMED = policy("a/web-named", sel({"app": "web"}), ingress=(rule(ports=(port("http"),)),))
EGRESS_BLOCK = policy("a/egress", sel({"app": "web"}),
                      egress=(rule(block("10.0.0.0/16", "10.0.2.0/24"), block("10.0.2.0/24")),))
EGRESS_NODE = policy("a/egress-node", sel({"app": "db"}), egress=(rule(block("192.168.0.0/24")),))
EGRESS_NAMED_OUT = policy("a/egress-named", sel({"app": "db"}),
                          egress=(rule(block("0.0.0.0/0"), ports=(port("http"),)),))
RANGE = policy("a/range", sel({"app": "db"}), ingress=(rule(ports=(port(5000, end=5500), port(53, "UDP"))),))


CASES = [
    # (policies, src, dst, port, protocol, expected)
    pytest.param([], "b/cli", "a/web", 80, "TCP", True, id="no-policy-allows"),
    pytest.param([DENY_ALL], "b/cli", "a/web", 80, "TCP", False, id="deny-all-ingress"),
    pytest.param([DENY_ALL], "a/web", "b/cli", 80, "TCP", False, id="deny-all-egress"),
    pytest.param([DENY_ALL], "a/web", OUTSIDE, 443, "TCP", False, id="deny-all-to-outside"),
    pytest.param([DENY_ALL], OUTSIDE, "a/web", 443, "TCP", False, id="deny-all-from-outside"),
    pytest.param([DENY_ALL], "192.168.0.1", "a/web", 80, "TCP", True, id="own-node-to-pod"),
    pytest.param([DENY_ALL], "192.168.0.2", "a/web", 80, "TCP", False, id="other-node-to-pod"),
    pytest.param([DENY_ALL], "a/web", "192.168.0.1", 10250, "TCP", False, id="pod-to-own-node-egress-denied"),
    pytest.param([WEB_FROM_B], "b/cli", "a/web", 80, "TCP", True, id="nssel-same-node"),
    pytest.param([WEB_FROM_B], "b/cli", "a/web2", 80, "TCP", True, id="nssel-cross-node"),
    pytest.param([WEB_FROM_B], "c/cli", "a/web", 80, "TCP", False, id="nssel-other-ns"),
    pytest.param([WEB_FROM_B], "b/cli", "a/db", 80, "TCP", True, id="not-selected-not-isolated"),
    pytest.param([DB_FROM_WEB_PG], "a/web", "a/db", 5432, "TCP", True, id="named-port"),
    pytest.param([DB_FROM_WEB_PG], "a/web", "a/db", 5433, "TCP", False, id="named-port-other-number"),
    pytest.param([DB_FROM_WEB_PG], "a/hostnet", "a/db", 5432, "TCP", False, id="hostnet-is-no-pod-peer"),
    pytest.param([DB_FROM_WEB_PG], "10.0.3.9", "a/db", 5432, "TCP", False, id="finished-pod-no-peer"),
    pytest.param([WEB_NAMED], "c/cli", "a/web", 8080, "TCP", True, id="named-port-per-pod-1"),
    pytest.param([WEB_NAMED], "c/cli", "a/web2", 9090, "TCP", True, id="named-port-per-pod-2"),
    pytest.param([WEB_NAMED], "c/cli", "a/web2", 8080, "TCP", False, id="named-port-per-pod-3"),
    pytest.param([EGRESS_BLOCK], "a/web", "a/db", 1, "TCP", True, id="two-blocks-or"),
    pytest.param([EGRESS_BLOCK], "a/web", "c/cli", 1, "TCP", True, id="block-covers-pod"),
    pytest.param([EGRESS_BLOCK], "a/web", OUTSIDE, 1, "TCP", False, id="block-outside"),
    pytest.param([EGRESS_NODE], "a/db", "192.168.0.2", 10250, "TCP", True, id="egress-to-own-node-ip"),
    pytest.param([EGRESS_NODE], "a/db", "192.168.0.3", 10250, "TCP", True, id="egress-to-other-node-ip"),
    pytest.param([EGRESS_NODE], "a/db", "a/hostnet", 10250, "TCP", True, id="egress-to-hostnet-pod"),
    pytest.param([EGRESS_NODE], "a/db", "a/web", 80, "TCP", False, id="egress-node-only"),
    pytest.param([EGRESS_NAMED_OUT], "a/db", "a/web", 8080, "TCP", True, id="egress-named-to-pod"),
    pytest.param([EGRESS_NAMED_OUT], "a/db", OUTSIDE, 8080, "TCP", False, id="egress-named-to-outside"),
    pytest.param([RANGE], "b/cli", "a/db", 5400, "TCP", True, id="end-port"),
    pytest.param([RANGE], "b/cli", "a/db", 5400, "UDP", False, id="end-port-protocol"),
    pytest.param([RANGE], "b/cli", "a/db", 53, "UDP", True, id="udp"),
    pytest.param([RANGE], "b/cli", "a/db", 53, "SCTP", False, id="sctp-not-udp"),
    pytest.param([DENY_ALL, WEB_FROM_B], "b/cli", "a/web", 80, "TCP", True, id="union-of-policies"),
    pytest.param([DENY_ALL, WEB_FROM_B], "a/web", "b/cli", 80, "TCP", False, id="ingress-rules-dont-allow-egress"),
    pytest.param([DENY_ALL], "a/web", "a/web", 8080, "TCP", True, id="pod-to-itself-never-leaves-the-pod"),
]


@pytest.mark.parametrize(("policies", "src", "dst", "dport", "protocol", "expected"), CASES)
def test_walker_agrees_with_expectation_and_oracle(policies: list[NetworkPolicy], src: str, dst: str, dport: int,
                                                   protocol: str, expected: bool) -> None:
    b = both(NAMESPACES, PODS, NODES, policies)
    decision, walked = b.walked(src, dst, dport, protocol)  # type: ignore[arg-type]
    assert decision.allowed == expected, decision.summary()
    assert walked.allowed == expected, "\n".join(walked.trace)


def test_dual_stack_walks_ipv6_in_the_v6_family() -> None:
    pods = [pod("a/web", "n1", ("10.0.1.1", "fd00::1:1"), app="web"),
            pod("b/cli", "n2", ("10.0.2.1", "fd00::2:1"), app="cli")]
    pols = [policy("a/web", sel({"app": "web"}), ingress=(rule(block("fd00::2:0/112")),))]
    b = both(NAMESPACES, pods, NODES, pols)
    assert b.engine.node_state("n1").v6.chains
    assert b.walked("b/cli", "a/web", 80, family=6)[1].allowed
    assert not b.walked("b/cli", "a/web", 80, family=4)[1].allowed


# ---------------------------------------------------------------- semantics


def _state(rules: tuple[Rule, ...], *sets: IPSet, extra: tuple[Chain, ...] = ()) -> NodeState:
    chains = {"STOCKADE-T": Chain("STOCKADE-T", rules), **{c.name: c for c in extra}}
    return NodeState("n", {s.name: s for s in sets}, FamilyState(chains, (Hook("FORWARD", "STOCKADE-T"),)))


NET = IPSet("stkN", "hash:net", "inet", frozenset({"10.0.0.0/8", "10.1.2.0/24", "0.0.0.0/1"}),
            frozenset({"10.1.0.0/16", "10.9.9.9"}))
DROP_NET = (Rule("DROP", sets=(SetMatch("stkN", ("dst",)),)),)


@pytest.mark.parametrize(("dst", "allowed"), [
    pytest.param("10.2.0.1", False, id="member"),
    pytest.param("10.1.3.1", True, id="nomatch-longer-prefix"),
    pytest.param("10.1.2.1", False, id="member-inside-nomatch"),
    pytest.param("10.9.9.9", True, id="nomatch-host"),
    pytest.param("11.0.0.1", False, id="half-of-slash-zero"),
    pytest.param("200.0.0.1", True, id="outside"),
])
def test_hash_net_longest_prefix_with_nomatch(dst: str, allowed: bool) -> None:
    st = _state(DROP_NET, NET)
    assert walk(None, st, Packet("1.1.1.1", dst)).allowed == allowed


def test_mark_xmark_jump_return_and_negation() -> None:
    sub = Chain("STOCKADE-S", (Rule("MARK", set_mark=(0x10, 0x10)), Rule("RETURN"), Rule("DROP")))
    rules = (
        Rule("MARK", set_mark=(0x0, 0xFF)),  # clear
        Rule("JUMP", target="STOCKADE-S", proto="tcp", dport=(80, 90)),
        Rule("DROP", mark=(0x10, 0x10, True)),
    )
    st = _state(rules, extra=(sub,))
    assert walk(None, st, Packet("1.1.1.1", "2.2.2.2", "tcp", 85, mark=0x10)).allowed
    assert not walk(None, st, Packet("1.1.1.1", "2.2.2.2", "tcp", 91, mark=0x10)).allowed  # cleared, no jump
    assert not walk(None, st, Packet("1.1.1.1", "2.2.2.2", "udp", 85)).allowed


def test_ip_port_set_and_ctstate() -> None:
    s = IPSet("stkP", "hash:ip,port", "inet", frozenset({"2.2.2.2,tcp:80"}))
    rules = (Rule("RETURN", ctstate=("RELATED", "ESTABLISHED")),
             Rule("DROP", sets=(SetMatch("stkP", ("dst", "dst"), negate=True),)))
    st = _state(rules, s)
    assert walk(None, st, Packet("1.1.1.1", "2.2.2.2", "tcp", 80)).allowed
    assert not walk(None, st, Packet("1.1.1.1", "2.2.2.2", "udp", 80)).allowed


def test_broken_state_is_an_error() -> None:
    with pytest.raises(WalkError, match="no chain"):
        walk(None, _state((Rule("JUMP", target="STOCKADE-NONE"),)), Packet("1.1.1.1", "2.2.2.2"))
    loop = Chain("STOCKADE-L", (Rule("JUMP", target="STOCKADE-L"),))
    with pytest.raises(WalkError, match="loop"):
        walk(None, _state((Rule("JUMP", target="STOCKADE-L"),), extra=(loop,)), Packet("1.1.1.1", "2.2.2.2"))
