"""controller.oracle: the NetworkPolicy v1 semantics, one table row per rule
of the spec (ids name the rule), plus the shape of a Decision."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controller.model import ContainerPort, Namespace, Node, Pod
from controller.oracle import Cluster, OracleError, RuleRef, decide
from controller.parse import parse_policy

EXT = "192.0.2.10"
NODE0, NODE1 = "198.19.0.1", "198.19.0.2"


def P(ns: str, name: str, labels: dict[str, str], node: int, ips: tuple[str, ...], *,
      ports: tuple[ContainerPort, ...] = (), host: bool = False, phase: str = "Running") -> Pod:
    return Pod(ns, name, labels, f"node-{node}", ips, host, phase, ports)


HTTP80 = ContainerPort(80, "TCP", "http")

PODS = [
    P("x", "a", {"app": "a"}, 0, ("198.18.0.2",), ports=(HTTP80, ContainerPort(53, "UDP", "dns"))),
    P("x", "b", {"app": "b"}, 1, ("198.18.1.2",), ports=(ContainerPort(8080, "TCP", "http"),)),
    P("x", "c", {"app": "c", "role": "db"}, 0, ("198.18.0.3",), ports=(ContainerPort(5432, "TCP", "pg"),)),
    P("y", "a", {"app": "a"}, 1, ("198.18.1.3",), ports=(HTTP80,)),
    P("y", "b", {"app": "b"}, 0, ("198.18.0.4",)),
    P("z", "a", {"app": "a"}, 1, ("198.18.1.4",)),
    P("x", "host", {"app": "host"}, 0, (NODE0,), host=True, ports=(HTTP80,)),
    P("x", "done", {"app": "a"}, 1, ("198.18.1.9",), phase="Succeeded"),
    P("x", "noip", {"app": "a"}, 1, (), phase="Pending"),
    P("x", "dual", {"app": "d"}, 1, ("198.18.1.5", "fd00::5")),
    P("x", "dual2", {"app": "d2"}, 0, ("198.18.0.6", "fd00::6")),
]
NAMESPACES = [Namespace("x", {"kubernetes.io/metadata.name": "x", "team": "a"}),
              Namespace("y", {"kubernetes.io/metadata.name": "y", "team": "b"}),
              Namespace("z", {"kubernetes.io/metadata.name": "z"})]
NODES = [Node("node-0", (NODE0,), ("198.18.0.0/24",)), Node("node-1", (NODE1,), ("198.18.1.0/24",))]


def np(spec: dict[str, Any], name: str = "p", ns: str = "x") -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def cluster(policies: list[dict[str, Any]]) -> Cluster:
    return Cluster(NAMESPACES, PODS, NODES, [parse_policy(p) for p in policies])


def sel(**labels: str) -> dict[str, Any]:
    return {"matchLabels": labels}


B = sel(app="b")  # selects x/b
DENY_ALL_X = np({"podSelector": {}})
DENY_EGRESS_X = np({"podSelector": {}, "policyTypes": ["Egress"]}, name="deny-egress")


def from_(*peers: Any, ports: Any = None, target: Any = B) -> dict[str, Any]:
    rule: dict[str, Any] = {"from": list(peers)}
    if ports is not None:
        rule["ports"] = ports
    return np({"podSelector": target, "ingress": [rule]})


def to_(*peers: Any, ports: Any = None, source: Any = None) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    if peers:
        rule["to"] = list(peers)
    if ports is not None:
        rule["ports"] = ports
    return np({"podSelector": source or sel(app="c"), "policyTypes": ["Egress"], "egress": [rule]})


ANY_A_OR_B = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]}

# (policies, src, dst, port, protocol, expected allowed, family)
TABLE = [
    # -- selection and isolation
    pytest.param([], "x/a", "x/b", 8080, "TCP", True, None, id="no-policy-allows"),
    pytest.param([DENY_ALL_X], "y/a", "x/b", 8080, "TCP", False, None, id="empty-podselector-selects-all"),
    pytest.param([np({"podSelector": {"matchLabels": None}})], "y/a", "x/b", 8080, "TCP", False, None,
                 id="null-matchlabels-selects-all"),
    pytest.param([np({"podSelector": {}}, ns="y")], "x/a", "x/b", 8080, "TCP", True, None,
                 id="policy-in-other-namespace-no-effect"),
    pytest.param([np({"podSelector": sel(app="a")})], "y/a", "x/b", 8080, "TCP", True, None,
                 id="unselected-pod-not-isolated"),
    pytest.param([np({"podSelector": B, "ingress": [{}]})], "z/a", "x/b", 8080, "TCP", True, None,
                 id="empty-rule-allows-all-sources"),
    pytest.param([np({"podSelector": B, "ingress": []})], "x/a", "x/b", 8080, "TCP", False, None,
                 id="no-rules-denies"),
    pytest.param([from_({"podSelector": sel(app="a")}), from_({"podSelector": sel(app="c")}, target=B)],
                 "x/c", "x/b", 8080, "TCP", True, None, id="union-of-policies"),
    # -- pod and namespace selectors
    pytest.param([from_({"podSelector": sel(app="a")})], "x/a", "x/b", 8080, "TCP", True, None,
                 id="pod-selector-own-namespace"),
    pytest.param([from_({"podSelector": sel(app="a")})], "y/a", "x/b", 8080, "TCP", False, None,
                 id="pod-selector-not-other-namespace"),
    pytest.param([from_({"podSelector": {}})], "y/b", "x/b", 8080, "TCP", False, None,
                 id="empty-pod-selector-own-namespace-only"),
    pytest.param([from_({"namespaceSelector": {}})], "z/a", "x/b", 8080, "TCP", True, None,
                 id="empty-namespace-selector-all-namespaces"),
    pytest.param([from_({"namespaceSelector": sel(team="b")})], "y/a", "x/b", 8080, "TCP", True, None,
                 id="namespace-selector-match"),
    pytest.param([from_({"namespaceSelector": sel(team="b")})], "z/a", "x/b", 8080, "TCP", False, None,
                 id="namespace-selector-no-match"),
    pytest.param([from_({"namespaceSelector": sel(team="b"), "podSelector": sel(app="b")})], "y/a", "x/b", 8080,
                 "TCP", False, None, id="ns-and-pod-in-one-peer-is-and"),
    pytest.param([from_({"namespaceSelector": sel(team="b"), "podSelector": sel(app="b")})], "y/b", "x/b", 8080,
                 "TCP", True, None, id="ns-and-pod-in-one-peer-both-match"),
    pytest.param([from_({"namespaceSelector": sel(team="b")}, {"podSelector": sel(app="a")})], "x/a", "x/b", 8080,
                 "TCP", True, None, id="separate-peers-are-or"),
    pytest.param([from_({"namespaceSelector": sel(team="b")}, {"podSelector": sel(app="a")})], "z/a", "x/b", 8080,
                 "TCP", False, None, id="separate-peers-neither"),
    pytest.param([from_({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                                                                "values": ["c", "a"]}]}})],
                 "x/c", "x/b", 8080, "TCP", True, None, id="expr-in"),
    pytest.param([from_({"podSelector": {"matchExpressions": [{"key": "role", "operator": "NotIn",
                                                                "values": ["db"]}]}})],
                 "x/a", "x/b", 8080, "TCP", True, None, id="expr-notin-missing-key-matches"),
    pytest.param([from_({"podSelector": {"matchExpressions": [{"key": "role", "operator": "NotIn",
                                                                "values": ["db"]}]}})],
                 "x/c", "x/b", 8080, "TCP", False, None, id="expr-notin-excludes"),
    pytest.param([from_({"podSelector": {"matchExpressions": [{"key": "role", "operator": "Exists"}]}})],
                 "x/a", "x/b", 8080, "TCP", False, None, id="expr-exists"),
    pytest.param([from_({"podSelector": {"matchExpressions": [{"key": "role", "operator": "DoesNotExist"}]}})],
                 "x/a", "x/b", 8080, "TCP", True, None, id="expr-doesnotexist"),
    pytest.param([from_({"podSelector": {"matchLabels": {"app": "c"},
                                         "matchExpressions": [{"key": "role", "operator": "In",
                                                               "values": ["web"]}]}})],
                 "x/c", "x/b", 8080, "TCP", False, None, id="labels-and-expressions-and"),
    # -- ipBlock
    pytest.param([from_({"ipBlock": {"cidr": "192.0.2.0/24"}})], EXT, "x/b", 8080, "TCP", True, None,
                 id="ipblock-external"),
    pytest.param([from_({"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.0/28"]}})], EXT, "x/b", 8080,
                 "TCP", False, None, id="ipblock-except"),
    pytest.param([from_({"ipBlock": {"cidr": "198.18.0.0/16"}})], "x/a", "x/b", 8080, "TCP", True, None,
                 id="ipblock-matches-pod-ip"),
    pytest.param([from_({"ipBlock": {"cidr": "198.18.0.0/16", "except": ["198.18.0.0/24"]}})], "x/a", "x/b",
                 8080, "TCP", False, None, id="ipblock-except-pod-ip"),
    pytest.param([from_({"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.0/28"]}},
                        {"ipBlock": {"cidr": "192.0.2.0/28"}})], EXT, "x/b", 8080, "TCP", True, None,
                 id="two-ipblocks-or-except-equals-other-cidr"),
    pytest.param([from_({"ipBlock": {"cidr": "0.0.0.0/0"}}, target=sel(app="d2"))], "x/dual", "x/dual2", 80,
                 "TCP", False, 6, id="ipv4-block-not-ipv6-source"),
    pytest.param([from_({"ipBlock": {"cidr": "fd00::/64"}}, target=sel(app="d2"))], "x/dual", "x/dual2", 80,
                 "TCP", True, 6, id="ipv6-block-dual-stack"),
    pytest.param([from_({"ipBlock": {"cidr": "fd00::/64"}}, target=sel(app="d2"))], "x/dual", "x/dual2", 80,
                 "TCP", False, None, id="dual-stack-prefers-ipv4"),
    pytest.param([from_({"podSelector": sel(app="d")}, target=sel(app="d2"))], "x/dual", "x/dual2", 80,
                 "TCP", True, 6, id="pod-selector-any-family"),
    # -- ports
    pytest.param([from_(ports=[{"port": 80}], target=sel(app="a"))], "x/b", "x/a", 80, "TCP", True, None,
                 id="port-numeric"),
    pytest.param([from_(ports=[{"port": 80}], target=sel(app="a"))], "x/b", "x/a", 81, "TCP", False, None,
                 id="port-numeric-other"),
    pytest.param([from_(ports=[{"port": 53}], target=sel(app="a"))], "x/b", "x/a", 53, "UDP", False, None,
                 id="protocol-defaults-to-tcp"),
    pytest.param([from_(ports=[{"port": 53, "protocol": "UDP"}], target=sel(app="a"))], "x/b", "x/a", 53, "UDP",
                 True, None, id="protocol-udp"),
    pytest.param([from_(ports=[{"protocol": "SCTP"}], target=sel(app="a"))], "x/b", "x/a", 9999, "SCTP", True,
                 None, id="protocol-sctp-all-ports"),
    pytest.param([from_(ports=[{"protocol": "SCTP"}], target=sel(app="a"))], "x/b", "x/a", 9999, "TCP", False,
                 None, id="protocol-sctp-not-tcp"),
    pytest.param([from_(ports=[{"port": 8000, "endPort": 8100}])], "x/a", "x/b", 8100, "TCP", True, None,
                 id="endport-inclusive"),
    pytest.param([from_(ports=[{"port": 8000, "endPort": 8100}])], "x/a", "x/b", 8101, "TCP", False, None,
                 id="endport-above"),
    pytest.param([from_(ports=[{"port": 8000, "endPort": 8100}])], "x/a", "x/b", 7999, "TCP", False, None,
                 id="endport-below-start"),
    pytest.param([from_({"podSelector": {}}, ports=[{"port": "http"}], target=ANY_A_OR_B)], "x/c", "x/a", 80,
                 "TCP", True, None, id="named-port-dst-a"),
    pytest.param([from_({"podSelector": {}}, ports=[{"port": "http"}], target=ANY_A_OR_B)], "x/c", "x/b", 8080,
                 "TCP", True, None, id="named-port-per-pod-b"),
    pytest.param([from_({"podSelector": {}}, ports=[{"port": "http"}], target=ANY_A_OR_B)], "x/c", "x/b", 80,
                 "TCP", False, None, id="named-port-other-pods-number"),
    pytest.param([from_(ports=[{"port": "http", "protocol": "UDP"}], target=sel(app="a"))], "x/c", "x/a", 80,
                 "TCP", False, None, id="named-port-protocol-must-match"),
    pytest.param([from_(ports=[{"port": "dns", "protocol": "UDP"}], target=sel(app="a"))], "x/c", "x/a", 53,
                 "UDP", True, None, id="named-port-udp"),
    pytest.param([to_(ports=[{"port": "http"}])], "x/c", "x/b", 8080, "TCP", True, None,
                 id="egress-named-port-resolved-on-destination"),
    pytest.param([to_(ports=[{"port": "http"}])], "x/c", EXT, 80, "TCP", False, None,
                 id="egress-named-port-to-external-never"),
    pytest.param([to_(ports=[{"port": "http"}])], "x/c", "x/host", 80, "TCP", False, None,
                 id="egress-named-port-to-hostnetwork-never"),
    pytest.param([to_(ports=[{"port": 80}])], "x/c", EXT, 80, "TCP", True, None, id="egress-numeric-port-external"),
    # -- policy types, directions
    pytest.param([np({"podSelector": B, "policyTypes": ["Egress"], "ingress": [{"from": [{"podSelector": {}}]}]})],
                 "y/a", "x/b", 8080, "TCP", True, None, id="egress-only-type-ignores-ingress"),
    pytest.param([np({"podSelector": B, "policyTypes": ["Egress"], "ingress": [{}]})], "x/b", "x/a", 80, "TCP",
                 False, None, id="egress-type-without-rules-denies-egress"),
    pytest.param([np({"podSelector": B, "policyTypes": ["Ingress"], "egress": []})], "x/b", "x/a", 80, "TCP",
                 True, None, id="ingress-type-leaves-egress-open"),
    pytest.param([np({"podSelector": B, "egress": [{"to": [{"podSelector": sel(app="a")}]}]})], "x/b", "x/c",
                 5432, "TCP", False, None, id="inferred-egress-isolates"),
    pytest.param([np({"podSelector": B, "egress": [{"to": [{"podSelector": sel(app="a")}]}]})], "y/a", "x/b",
                 8080, "TCP", False, None, id="inferred-ingress-always"),
    pytest.param([np({"podSelector": B, "policyTypes": ["Ingress", "Egress"],
                      "ingress": [{"from": [{"podSelector": sel(app="a")}]}],
                      "egress": [{"to": [{"podSelector": sel(app="c")}]}]})],
                 "x/b", "x/a", 80, "TCP", False, None, id="ingress-rule-never-allows-egress"),
    pytest.param([np({"podSelector": B, "policyTypes": ["Ingress", "Egress"],
                      "ingress": [{"from": [{"podSelector": sel(app="a")}]}],
                      "egress": [{"to": [{"podSelector": sel(app="c")}]}]})],
                 "x/c", "x/b", 8080, "TCP", False, None, id="egress-rule-never-allows-ingress"),
    pytest.param([DENY_EGRESS_X, np({"podSelector": {}, "ingress": [{}]}, name="open")], "x/a", "x/b", 8080,
                 "TCP", False, None, id="needs-source-egress"),
    pytest.param([np({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}, name="eg"),
                  np({"podSelector": B}, name="deny-b")], "x/a", "x/b",
                 8080, "TCP", False, None, id="needs-destination-ingress"),
    pytest.param([DENY_EGRESS_X], "x/a", NODE0, 10250, "TCP", False, None, id="pod-to-own-node-egress-enforced"),
    # -- nodes, hostNetwork, finished and address-only endpoints
    pytest.param([DENY_ALL_X], NODE0, "x/a", 80, "TCP", True, None, id="own-node-always-allowed"),
    pytest.param([DENY_ALL_X], NODE1, "x/a", 80, "TCP", False, None, id="other-node-not-exempt"),
    pytest.param([DENY_ALL_X], "x/host", "x/a", 80, "TCP", True, None, id="hostnetwork-pod-same-node-allowed"),
    pytest.param([DENY_ALL_X, DENY_EGRESS_X], "x/a", "x/a", 80, "TCP", True, None, id="pod-to-itself-always-allowed"),
    pytest.param([DENY_ALL_X], "x/host", "x/b", 8080, "TCP", False, None, id="hostnetwork-pod-other-node-denied"),
    pytest.param([DENY_EGRESS_X, DENY_ALL_X], "x/host", "y/a", 80, "TCP", True, None,
                 id="hostnetwork-pod-never-selected"),
    pytest.param([from_({"podSelector": {}})], "x/host", "x/b", 8080, "TCP", False, None,
                 id="hostnetwork-not-a-pod-peer"),
    pytest.param([from_({"ipBlock": {"cidr": "198.19.0.0/24"}})], "x/host", "x/b", 8080, "TCP", True, None,
                 id="hostnetwork-matched-by-ipblock"),
    pytest.param([DENY_ALL_X], EXT, "x/done", 80, "TCP", True, None, id="finished-pod-not-a-target"),
    pytest.param([from_({"podSelector": sel(app="a")})], "x/done", "x/b", 8080, "TCP", False, None,
                 id="finished-pod-not-a-peer"),
    pytest.param([from_({"ipBlock": {"cidr": "198.18.1.0/24"}})], "x/done", "x/b", 8080, "TCP", True, None,
                 id="finished-pod-address-by-ipblock"),
    pytest.param([from_({"podSelector": sel(app="a")})], "198.18.0.2", "x/b", 8080, "TCP", True, None,
                 id="pod-ip-means-the-pod"),
]


@pytest.mark.parametrize(("policies", "src", "dst", "port", "proto", "allowed", "family"), TABLE)
def test_semantics(policies: list[dict[str, Any]], src: str, dst: str, port: int, proto: Any,
                   allowed: bool, family: int | None) -> None:
    d = decide(cluster(policies), src, dst, port, proto, family)
    assert d.allowed is allowed, d.summary()
    assert d.allowed == (d.egress.allowed and d.ingress.allowed)


def test_reasons_name_policy_rule_and_direction() -> None:
    c = cluster([
        np({"podSelector": B, "ingress": [{"from": [{"podSelector": sel(app="z")}]},
                                          {"from": [{"podSelector": sel(app="a")}]}]}, name="one"),
        np({"podSelector": {}, "ingress": [{}]}, name="two"),
        DENY_EGRESS_X,
    ])
    d = decide(c, "y/a", "x/b", 8080)
    assert d.allowed and d.src.ip == "198.18.1.3" and d.dst.ip == "198.18.1.2"
    assert not d.egress.isolated and d.egress.allowed
    assert d.ingress.isolated and d.ingress.policies == ("x/one", "x/two")
    assert d.ingress.allowed_by == (RuleRef("x/two", "ingress", 0),)
    d2 = decide(c, "x/a", "x/b", 8080)
    assert not d2.allowed
    assert d2.egress.policies == ("x/deny-egress",) and d2.egress.allowed_by == ()
    assert "isolated by x/deny-egress; no egress rule matches" in d2.egress.reason
    assert d2.ingress.allowed_by == (RuleRef("x/one", "ingress", 1), RuleRef("x/two", "ingress", 0))
    doc = d2.to_json()
    json.dumps(doc)
    assert doc["verdict"] == "deny" and doc["ingress"]["allowed_by"][0] == {
        "policy": "x/one", "direction": "ingress", "rule": 1}
    assert doc["src"] == {"name": "x/a", "ip": "198.18.0.2", "kind": "pod", "node": "node-0"}
    assert d2.summary().startswith("deny x/a (198.18.0.2) -> x/b (198.18.1.2) 8080/TCP: egress: ")


@pytest.mark.parametrize(("src", "dst", "family", "message"), [
    pytest.param("x/noip", "x/a", None, "x/noip: pod has no IP address", id="pod-without-ip"),
    pytest.param("x/nope", "x/a", None, "x/nope: no such pod", id="unknown-pod"),
    pytest.param("bogus", "x/a", None, "'bogus' is neither a pod", id="not-an-endpoint"),
    pytest.param("x/a", "x/dual", 6, "have no IPv6", id="no-common-family"),
    pytest.param("2001:db8::1", "x/a", None, "have no a common address family", id="family-mismatch"),
])
def test_unanswerable(src: str, dst: str, family: int | None, message: str) -> None:
    with pytest.raises(OracleError) as ei:
        decide(cluster([]), src, dst, 80, "TCP", family)
    assert message in str(ei.value)


def test_cluster_updates_keep_indexes() -> None:
    c = cluster([DENY_ALL_X])
    assert not decide(c, "y/a", "x/b", 8080).allowed
    c.remove_policy("x/p")
    assert decide(c, "y/a", "x/b", 8080).allowed
    c.set_policy(parse_policy(from_({"podSelector": sel(app="a")})))
    assert decide(c, "198.18.0.2", "x/b", 8080).allowed  # by IP -> x/a
    c.remove_pod("x/a")
    with pytest.raises(OracleError):
        decide(c, "x/a", "x/b", 8080)
    assert not decide(c, "198.18.0.2", "x/b", 8080).allowed  # now just an address
    c.set_pod(P("x", "a", {"app": "a"}, 0, ("198.18.0.2",)))
    c.set_pod(P("x", "a", {"app": "q"}, 0, ("198.18.0.2",)))  # relabel
    assert not decide(c, "x/a", "x/b", 8080).allowed
    c.set_namespace(Namespace("y", {"team": "a"}))
    c.remove_node("node-0")
    assert not decide(c, NODE0, "x/b", 8080).allowed  # node gone: plain address, no exemption
