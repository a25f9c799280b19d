"""controller.parse: policy validation (every error with its field path),
normal forms, and pod/namespace/node projection."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controller.model import SELECT_ALL, IPBlock, LabelSelector, Peer, PortSpec, Requirement
from controller.parse import ParseError, PolicyInvalid, parse_namespace, parse_node, parse_pod, parse_policy


def pol(spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    m = {"name": "p", **meta}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": m, "spec": spec}


def ingress_from(*peers: Any) -> dict[str, Any]:
    return {"podSelector": {}, "ingress": [{"from": list(peers)}]}


def ingress_ports(*ports: Any) -> dict[str, Any]:
    return {"podSelector": {}, "ingress": [{"ports": list(ports)}]}


def sel_expr(*exprs: Any) -> dict[str, Any]:
    return {"podSelector": {"matchExpressions": list(exprs)}}


INVALID = [
    pytest.param(ingress_from({"ipBlock": {"cidr": "10.0.0.0/33"}}),
                 ["spec.ingress[0].from[0].ipBlock.cidr: '10.0.0.0/33' is not a valid CIDR (e.g. 10.9.8.0/24 or 2001:db8::/64)"],
                 id="bad-cidr"),
    pytest.param(ingress_from({"ipBlock": {"cidr": "10.0.0.1"}}),
                 ["spec.ingress[0].from[0].ipBlock.cidr: '10.0.0.1' is not a valid CIDR (e.g. 10.9.8.0/24 or 2001:db8::/64)"],
                 id="cidr-without-prefix"),
    pytest.param(ingress_from({"ipBlock": {}}), ["spec.ingress[0].from[0].ipBlock.cidr: required"], id="cidr-missing"),
    pytest.param(ingress_from({}, {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/16"]}}),
                 ["spec.ingress[0].from[0]: must specify a peer (podSelector, namespaceSelector or ipBlock)",
                  "spec.ingress[0].from[1].ipBlock.except[0]: 10.1.0.0/16 is not within cidr 10.0.0.0/16 (must be a strict subset)"],
                 id="except-outside-and-empty-peer"),
    pytest.param(ingress_from({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/16"]}}),
                 ["spec.ingress[0].from[0].ipBlock.except[0]: 10.0.0.0/16 is not within cidr 10.0.0.0/16 (must be a strict subset)"],
                 id="except-equal-to-cidr"),
    pytest.param(ingress_from({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["fd00::/64"]}}),
                 ["spec.ingress[0].from[0].ipBlock.except[0]: fd00::/64 is not within cidr 10.0.0.0/16 (must be a strict subset)"],
                 id="except-other-family"),
    pytest.param(ingress_from({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["nope"]}}),
                 ["spec.ingress[0].from[0].ipBlock.except[0]: 'nope' is not a valid CIDR (e.g. 10.9.8.0/24 or 2001:db8::/64)"],
                 id="except-not-cidr"),
    pytest.param(ingress_from({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}),
                 ["spec.ingress[0].from[0]: may not specify both ipBlock and another peer"], id="ipblock-with-pod-selector"),
    pytest.param(ingress_from({"ipBlock": {"cidr": "10.0.0.0/8"}, "namespaceSelector": {}}),
                 ["spec.ingress[0].from[0]: may not specify both ipBlock and another peer"], id="ipblock-with-ns-selector"),
    pytest.param({"egress": [{"to": [{"podSelector": None}]}]},
                 ["spec.egress[0].to[0]: must specify a peer (podSelector, namespaceSelector or ipBlock)"], id="null-peer"),
    pytest.param(ingress_ports({"port": 0}, {"port": 65536}),
                 ["spec.ingress[0].ports[0].port: 0 must be between 1 and 65535, inclusive",
                  "spec.ingress[0].ports[1].port: 65536 must be between 1 and 65535, inclusive"], id="port-range"),
    pytest.param(ingress_ports({"port": 80, "endPort": 79}),
                 ["spec.ingress[0].ports[0].endPort: 79 must be greater than or equal to port 80"], id="endport-below-port"),
    pytest.param(ingress_ports({"port": 80, "endPort": 70000}),
                 ["spec.ingress[0].ports[0].endPort: 70000 must be between 1 and 65535, inclusive"], id="endport-range"),
    pytest.param(ingress_ports({"port": "http", "endPort": 90}),
                 ["spec.ingress[0].ports[0].endPort: may not be specified when port is a named port ('http')"],
                 id="endport-with-named-port"),
    pytest.param(ingress_ports({"endPort": 90}),
                 ["spec.ingress[0].ports[0].endPort: may not be specified when port is not specified"],
                 id="endport-without-port"),
    pytest.param(ingress_ports({"port": "HTTP"}),
                 ["spec.ingress[0].ports[0].port: invalid port name 'HTTP': must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"],
                 id="port-name-uppercase"),
    pytest.param(ingress_ports({"port": "8080"}),
                 ["spec.ingress[0].ports[0].port: invalid port name '8080': must contain at least one letter (a-z)"],
                 id="port-name-digits-only"),
    pytest.param(ingress_ports({"port": "a--b"}),
                 ["spec.ingress[0].ports[0].port: invalid port name 'a--b': must not contain consecutive hyphens"],
                 id="port-name-double-hyphen"),
    pytest.param(ingress_ports({"port": "-ab"}),
                 ["spec.ingress[0].ports[0].port: invalid port name '-ab': must not begin or end with a hyphen"],
                 id="port-name-leading-hyphen"),
    pytest.param(ingress_ports({"port": "a-very-long-port-name"}),
                 ["spec.ingress[0].ports[0].port: invalid port name 'a-very-long-port-name': must be no more than 15 characters"],
                 id="port-name-too-long"),
    pytest.param(ingress_ports({"port": 1.5}),
                 ["spec.ingress[0].ports[0].port: must be a port number or a port name, not 1.5"], id="port-float"),
    pytest.param(ingress_ports({"protocol": "ICMP", "port": 1}),
                 ["spec.ingress[0].ports[0].protocol: unsupported protocol 'ICMP': supported values are TCP, UDP, SCTP"],
                 id="unknown-protocol"),
    pytest.param(ingress_ports({"protocol": "tcp"}),
                 ["spec.ingress[0].ports[0].protocol: unsupported protocol 'tcp': supported values are TCP, UDP, SCTP"],
                 id="lowercase-protocol"),
    pytest.param(sel_expr({"key": "a", "operator": "Matches", "values": ["x"]}),
                 ["spec.podSelector.matchExpressions[0].operator: 'Matches' is not a valid selector operator (In, NotIn, Exists, DoesNotExist)"],
                 id="bad-operator"),
    pytest.param(sel_expr({"key": "a", "operator": "In", "values": []}),
                 ["spec.podSelector.matchExpressions[0].values: must be specified when operator is 'In'"], id="in-no-values"),
    pytest.param(sel_expr({"key": "a", "operator": "NotIn"}),
                 ["spec.podSelector.matchExpressions[0].values: must be specified when operator is 'NotIn'"], id="notin-no-values"),
    pytest.param(sel_expr({"key": "a", "operator": "Exists", "values": ["x"]}),
                 ["spec.podSelector.matchExpressions[0].values: may not be specified when operator is 'Exists'"],
                 id="exists-with-values"),
    pytest.param(sel_expr({"key": "a", "operator": "DoesNotExist", "values": ["x"]}),
                 ["spec.podSelector.matchExpressions[0].values: may not be specified when operator is 'DoesNotExist'"],
                 id="doesnotexist-with-values"),
    pytest.param(sel_expr({"key": "a b", "operator": "Exists"}),
                 ["spec.podSelector.matchExpressions[0].key: invalid label key 'a b': name part must consist of "
                  "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"],
                 id="bad-expression-key"),
    pytest.param(sel_expr({"key": "a", "operator": "In", "values": ["ok", "-bad"]}),
                 ["spec.podSelector.matchExpressions[0].values[1]: invalid label value '-bad': must consist of "
                  "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"],
                 id="bad-expression-value"),
    pytest.param({"podSelector": {"matchLabels": {"Example.COM/app": "x"}}},
                 ["spec.podSelector.matchLabels[Example.COM/app]: invalid label key 'Example.COM/app': prefix part "
                  "must be a lowercase RFC 1123 subdomain"], id="bad-label-key-prefix"),
    pytest.param({"podSelector": {"matchLabels": {"app": "x" * 64}}},
                 [f"spec.podSelector.matchLabels[app]: invalid label value '{'x' * 64}': must be no more than 63 characters"],
                 id="label-value-too-long"),
    pytest.param({"podSelector": {"matchLabels": {"app": 3}}},
                 ["spec.podSelector.matchLabels[app]: label value must be a string, not int"], id="label-value-int"),
    pytest.param({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"/x": "y"}}}]}]},
                 ["spec.ingress[0].from[0].namespaceSelector.matchLabels[/x]: invalid label key '/x': prefix part must be non-empty"],
                 id="ns-selector-bad-key"),
    pytest.param({"podSelector": {}, "policyTypes": ["Ingress", "Sideways"]},
                 ["spec.policyTypes[1]: unsupported value 'Sideways': supported values are Ingress, Egress"],
                 id="unknown-policy-type"),
    pytest.param({"podSelector": {}, "policyTypes": ["Ingress", "Egress", "Ingress"]},
                 ["spec.policyTypes: may not specify more than two policyTypes (got 3)"], id="too-many-policy-types"),
    pytest.param({"podSelector": {}, "ingres": [{}]}, ["spec.ingres: unknown field"], id="unknown-spec-field"),
    pytest.param({"podSelector": {}, "ingress": [{"form": []}]}, ["spec.ingress[0].form: unknown field"],
                 id="unknown-rule-field"),
    pytest.param({"podSelector": {}, "ingress": "all"}, ["spec.ingress: must be a list, not str"], id="ingress-not-list"),
    pytest.param({"podSelector": []}, ["spec.podSelector: must be an object, not list"], id="selector-not-object"),
]


@pytest.mark.parametrize(("spec", "errors"), INVALID)
def test_invalid_policy_errors(spec: dict[str, Any], errors: list[str]) -> None:
    with pytest.raises(PolicyInvalid) as ei:
        parse_policy(pol(spec))
    assert ei.value.errors == errors
    assert ei.value.key == "default/p"


@pytest.mark.parametrize(("meta", "errors", "key"), [
    pytest.param({"name": ""}, ["metadata.name: required"], "default/<unnamed>", id="missing-name"),
    pytest.param({"name": "Bad_Name"}, ["metadata.name: invalid name 'Bad_Name': must be a lowercase RFC 1123 "
                                        "subdomain (a-z, 0-9, '-' and '.')"], "default/Bad_Name", id="bad-name"),
    pytest.param({"name": "p", "namespace": "a.b"},
                 ["metadata.namespace: invalid namespace 'a.b': must be a lowercase RFC 1123 label (at most 63 "
                  "characters, a-z, 0-9 and '-')"], "a.b/p", id="bad-namespace"),
])
def test_invalid_metadata(meta: dict[str, Any], errors: list[str], key: str) -> None:
    obj = pol({"podSelector": {}})
    obj["metadata"] = meta
    with pytest.raises(PolicyInvalid) as ei:
        parse_policy(obj)
    assert ei.value.errors == errors
    assert ei.value.key == key


def test_wrong_kind_and_all_errors_at_once() -> None:
    obj = pol({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]},
               "ingress": [{"ports": [{"port": 0}]}], "egress": [{"to": [{}]}]})
    obj["kind"] = "Pod"
    with pytest.raises(PolicyInvalid) as ei:
        parse_policy(obj)
    assert ei.value.errors == [
        "kind: 'Pod' is not NetworkPolicy",
        "spec.podSelector.matchExpressions[0].values: must be specified when operator is 'In'",
        "spec.ingress[0].ports[0].port: 0 must be between 1 and 65535, inclusive",
        "spec.egress[0].to[0]: must specify a peer (podSelector, namespaceSelector or ipBlock)",
    ]
    assert "default/p is invalid" in str(ei.value)


@pytest.mark.parametrize("selector", [
    pytest.param(None, id="absent"),
    pytest.param({}, id="empty"),
    pytest.param({"matchLabels": None}, id="matchLabels-null"),
    pytest.param({"matchLabels": {}, "matchExpressions": []}, id="both-empty"),
    pytest.param({"matchExpressions": None}, id="expressions-null"),
])
def test_select_all_forms(selector: Any) -> None:
    spec: dict[str, Any] = {} if selector is None else {"podSelector": selector}
    assert parse_policy(pol(spec)).pod_selector == SELECT_ALL


@pytest.mark.parametrize(("spec", "types"), [
    pytest.param({}, ("Ingress",), id="nothing-ingress"),
    pytest.param({"ingress": [{}]}, ("Ingress",), id="ingress-rules"),
    pytest.param({"egress": [{}]}, ("Ingress", "Egress"), id="egress-rules-add-egress"),
    pytest.param({"egress": []}, ("Ingress",), id="empty-egress-no-egress"),
    pytest.param({"policyTypes": ["Egress"]}, ("Egress",), id="given-egress"),
    pytest.param({"policyTypes": ["Egress", "Ingress"]}, ("Ingress", "Egress"), id="given-both-ordered"),
    pytest.param({"policyTypes": [], "egress": [{}]}, ("Ingress", "Egress"), id="empty-list-inferred"),
    pytest.param({"policyTypes": ["Ingress"], "egress": [{}]}, ("Ingress",), id="given-overrides-rules"),
])
def test_policy_types(spec: dict[str, Any], types: tuple[str, ...]) -> None:
    assert parse_policy(pol(spec)).policy_types == types


def test_normal_forms() -> None:
    p = parse_policy(pol({
        "podSelector": {"matchLabels": {"b": "2", "a": "1"},
                        "matchExpressions": [{"key": "z", "operator": "In", "values": ["y", "x", "y"]},
                                             {"key": "k", "operator": "Exists"}]},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"t": "x"}}},
                              {"ipBlock": {"cidr": "10.1.2.3/16", "except": ["10.1.9.0/24", "010.1.3.0/24"]}}],
                     "ports": [{"port": 80, "endPort": 80}, {"port": "http", "protocol": "UDP"}, {}]}],
    }, namespace="x"))
    assert p.key == "x/p"
    assert p.pod_selector == LabelSelector((("a", "1"), ("b", "2")),
                                           (Requirement("k", "Exists"), Requirement("z", "In", ("x", "y"))))
    rule = p.ingress[0]
    assert rule.peers == (
        Peer(pod_selector=SELECT_ALL, namespace_selector=LabelSelector((("t", "x"),))),
        Peer(ip_block=IPBlock("10.1.0.0/16", ("10.1.3.0/24", "10.1.9.0/24"))),
    )
    assert rule.ports == (PortSpec("TCP", 80, None), PortSpec("UDP", "http", None), PortSpec("TCP", None, None))


def test_ipv6_block_and_endport() -> None:
    p = parse_policy(pol({"podSelector": {}, "egress": [{
        "to": [{"ipBlock": {"cidr": "2001:DB8::/32", "except": ["2001:db8:0:1::/64"]}}],
        "ports": [{"port": 1000, "endPort": 2000, "protocol": "SCTP"}]}]}))
    assert p.egress[0].peers[0].ip_block == IPBlock("2001:db8::/32", ("2001:db8:0:1::/64",))
    assert p.egress[0].ports == (PortSpec("SCTP", 1000, 2000),)


def test_selectors_interned_and_input_untouched() -> None:
    raw = pol({"podSelector": {"matchLabels": {"app": "x"}}})
    before = copy.deepcopy(raw)
    a = parse_policy(raw)
    b = parse_policy(copy.deepcopy(raw))
    assert a.pod_selector is b.pod_selector
    assert raw == before


def test_cached_selector_still_reports_unknown_field() -> None:
    parse_policy(pol({"podSelector": {"matchLabels": {"app": "x"}}}))
    with pytest.raises(PolicyInvalid) as ei:
        parse_policy(pol({"podSelector": {"matchLabels": {"app": "x"}, "matchLabel": {}}}))
    assert ei.value.errors == ["spec.podSelector.matchLabel: unknown field"]


# --------------------------------------------------------------------------
# Pods, namespaces, nodes


def pod(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "metadata": {"name": "a", "namespace": "x", "labels": {"app": "a"}},
        "spec": {"nodeName": "node-0", "containers": [
            {"name": "c1", "ports": [{"containerPort": 80, "name": "http"}]},
            {"name": "c2", "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"}]}]},
        "status": {"phase": "Running", "podIP": "198.18.0.2", "podIPs": [{"ip": "198.18.0.2"}, {"ip": "FD00::0002"}]},
    }
    for k, v in over.items():
        base[k] = v
    return base


def test_pod_dual_stack_ports_all_containers() -> None:
    p = parse_pod(pod())
    assert p.key == "x/a"
    assert p.ips == ("198.18.0.2", "fd00::2")
    assert p.node == "node-0" and p.phase == "Running" and not p.host_network
    assert p.named_port("http", "TCP") == 80
    assert p.named_port("dns", "UDP") == 53
    assert p.named_port("dns", "TCP") is None


@pytest.mark.parametrize(("status", "ips", "phase"), [
    pytest.param({"podIP": "198.18.0.9"}, ("198.18.0.9",), "Pending", id="podIP-fallback"),
    pytest.param({}, (), "Pending", id="no-ip"),
    pytest.param(None, (), "Pending", id="no-status"),
    pytest.param({"phase": "Succeeded", "podIPs": [{"ip": "198.18.0.3"}, {"ip": "198.18.0.3"}]}, ("198.18.0.3",),
                 "Succeeded", id="dedup"),
])
def test_pod_status_forms(status: Any, ips: tuple[str, ...], phase: str) -> None:
    p = parse_pod(pod(status=status))
    assert (p.ips, p.phase) == (ips, phase)


def test_pod_odd_but_legal() -> None:
    p = parse_pod({"metadata": {"name": "a", "labels": None}, "spec": {"hostNetwork": True, "initContainers": [
        {"name": "side", "restartPolicy": "Always", "ports": [{"containerPort": 9000, "name": "side"}]},
        {"name": "init", "ports": [{"containerPort": 9001, "name": "init"}]}]}})
    assert p.namespace == "default" and p.labels == {} and p.host_network and p.node == ""
    assert [cp.port for cp in p.ports] == [9000]


@pytest.mark.parametrize(("obj", "field"), [
    pytest.param({"metadata": {}}, "metadata.name", id="no-name"),
    pytest.param({"metadata": {"name": "a", "labels": {"x": 1}}}, "metadata.labels[x]", id="label-int"),
    pytest.param({"metadata": {"name": "a"}, "status": {"podIPs": [{"ip": "999.1.1.1"}]}}, "status.podIPs[0].ip",
                 id="bad-ip"),
    pytest.param({"metadata": {"name": "a"}, "spec": {"containers": [{"ports": [{"containerPort": "80"}]}]}},
                 "spec.containers[0].ports[0].containerPort", id="port-string"),
    pytest.param({"metadata": {"name": "a"}, "spec": {"containers": [{"ports": [{"containerPort": 80,
                                                                                   "protocol": "ICMP"}]}]}},
                 "spec.containers[0].ports[0].protocol", id="port-protocol"),
    pytest.param({"metadata": {"name": "a"}, "spec": {"hostNetwork": "yes"}}, "spec.hostNetwork", id="hostnetwork"),
    pytest.param({"metadata": {"name": "a"}, "spec": []}, "spec", id="spec-list"),
    pytest.param([], "<object>", id="not-object"),
])
def test_pod_malformed(obj: Any, field: str) -> None:
    with pytest.raises(ParseError) as ei:
        parse_pod(obj)
    assert ei.value.field == field
    assert str(ei.value).startswith(field + ": ")


def test_namespace_and_node() -> None:
    ns = parse_namespace({"metadata": {"name": "x", "labels": {"team": "a"}}})
    assert (ns.name, dict(ns.labels)) == ("x", {"team": "a"})
    n = parse_node({"metadata": {"name": "n"}, "spec": {"podCIDR": "198.18.0.7/24"}, "status": {"addresses": [
        {"type": "Hostname", "address": "n"}, {"type": "InternalIP", "address": "198.19.0.1"},
        {"type": "ExternalIP", "address": "2001:db8::1"}, {"type": "InternalIP", "address": "198.19.0.1"}]}})
    assert n.addresses == ("198.19.0.1", "2001:db8::1")
    assert n.pod_cidrs == ("198.18.0.0/24",)
    n2 = parse_node({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.0.0.0/24",
                                                          "podCIDRs": ["10.0.0.0/24", "fd00::/64"]}})
    assert n2.pod_cidrs == ("10.0.0.0/24", "fd00::/64")
    with pytest.raises(ParseError) as ei:
        parse_node({"metadata": {"name": "n"}, "status": {"addresses": [{"type": "InternalIP", "address": "x"}]}})
    assert ei.value.field == "status.addresses[0].address"


# --------------------------------------------------------------------------
# Robustness: garbage anywhere gives a clear error, never a crash

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 70000) | st.floats(allow_nan=False)
                    | st.sampled_from(["", "TCP", "http", "10.0.0.0/8", "In", "Exists", "a", "-", "::/0"]),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["podSelector", "namespaceSelector", "ipBlock", "cidr", "except", "port",
                                         "endPort", "protocol", "from", "to", "ports", "matchLabels",
                                         "matchExpressions", "key", "operator", "values", "x"]), inner, max_size=3),
                    max_leaves=12)
VALID = pol({"podSelector": {"matchLabels": {"a": "b"}},
             "ingress": [{"from": [{"podSelector": {}, "namespaceSelector": {"matchExpressions": [
                 {"key": "k", "operator": "In", "values": ["v"]}]}}, {"ipBlock": {"cidr": "10.0.0.0/8",
                                                                                   "except": ["10.1.0.0/16"]}}],
                          "ports": [{"port": 80, "endPort": 90}]}],
             "egress": [{"to": [{"ipBlock": {"cidr": "::/0"}}], "ports": [{"port": "dns", "protocol": "UDP"}]}]})


def _paths(v: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(v, dict):
        for k, x in v.items():
            out += _paths(x, (*prefix, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += _paths(x, (*prefix, i))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_garbage_anywhere_in_a_policy_is_a_clear_error(data: st.DataObject) -> None:
    obj = copy.deepcopy(VALID)
    path = data.draw(st.sampled_from([p for p in _paths(obj["spec"]) if p]))
    cur: Any = obj["spec"]
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = data.draw(JSON)
    try:
        parse_policy(obj)
    except PolicyInvalid as e:
        assert e.errors
        for msg in e.errors:
            assert msg.startswith("spec."), msg
            assert ": " in msg


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_garbage_anywhere_in_a_pod_is_a_parse_error(data: st.DataObject) -> None:
    obj = pod()
    path = data.draw(st.sampled_from([p for p in _paths(obj) if p]))
    cur: Any = obj
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = data.draw(JSON)
    try:
        parse_pod(obj)
    except ParseError as e:
        assert e.field and e.message
