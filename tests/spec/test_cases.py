"""stockade.cases: loader errors (file + field), templates, the address
plan, step operations and the result document."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest

from stockade import cases
from stockade.cases import CaseError, PodDecl


def base() -> dict[str, Any]:
    return {
        "name": "t",
        "nodes": 2,
        "namespaces": {"x": {"labels": {"kubernetes.io/metadata.name": "x"}},
                       "y": {"labels": {"team": "b"}}},
        "pods": [
            {"namespace": "x", "name": "a", "labels": {"app": "a"}, "ports": [{"port": 80, "name": "http"}]},
            {"namespace": "x", "name": "b", "labels": {"app": "b"}},
            {"namespace": "y", "name": "c", "node": 1},
            {"namespace": "y", "name": "h", "hostNetwork": True},
        ],
        "external": [{"name": "net", "ip": "192.0.2.10", "ports": [{"port": 53, "protocol": "UDP"}]}],
        "policies": [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                      "metadata": {"name": "p", "namespace": "x"},
                      "spec": {"podSelector": {}, "ingress": [{"from": [
                          {"ipBlock": {"cidr": "{{ip x/b}}/32"}},
                          {"ipBlock": {"cidr": "{{prefix y/c 16}}", "except": ["{{ip external:net}}/32"]}}]}]}}],
        "probes": [{"from": "x/b", "to": "x/a", "port": 80, "protocol": "TCP", "expect": "allow"}],
    }


def write(tmp_path: Path, doc: Any, name: str = "c.json") -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def mutate(path: str, value: Any) -> dict[str, Any]:
    doc = base()
    cur: Any = doc
    parts = path.split("/")
    for k in parts[:-1]:
        cur = cur[int(k)] if isinstance(cur, list) else cur[k]
    last = parts[-1]
    if value is _DEL:
        del cur[last]
    elif isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value
    return doc


_DEL = object()
STEP = {"name": "s", "actions": [], "probes": []}

ERRORS = [
    pytest.param(mutate("name", _DEL), "name", "required", id="missing-name"),
    pytest.param(mutate("nodes", 0), "nodes", "0 is not between 1 and 200", id="zero-nodes"),
    pytest.param(mutate("nodes", "2"), "nodes", "must be an integer, not '2'", id="nodes-string"),
    pytest.param(mutate("extra", 1), "extra", "unknown field", id="unknown-top-field"),
    pytest.param(mutate("namespaces", []), "namespaces", "must be an object, not list", id="namespaces-list"),
    pytest.param(mutate("namespaces/x/labels", {"a": 1}), "namespaces.x.labels.a",
                 "label value must be a string, not int", id="namespace-label-int"),
    pytest.param(mutate("pods/0/namespace", "nope"), "pods[0].namespace", "namespace 'nope' is not declared",
                 id="pod-unknown-namespace"),
    pytest.param(mutate("pods/1/name", "a"), "pods[1].name", "duplicate pod x/a", id="duplicate-pod"),
    pytest.param(mutate("pods/2/node", 2), "pods[2].node", "2 is not between 0 and 1", id="node-out-of-range"),
    pytest.param(mutate("pods/0/ports/0/port", 70000), "pods[0].ports[0].port", "70000 is not between 1 and 65535",
                 id="pod-port-range"),
    pytest.param(mutate("pods/0/ports/0/protocol", "ICMP"), "pods[0].ports[0].protocol",
                 "'ICMP' is not TCP, UDP or SCTP", id="pod-port-protocol"),
    pytest.param(mutate("pods/3/hostNetwork", "yes"), "pods[3].hostNetwork", "must be true or false",
                 id="hostnetwork-not-bool"),
    pytest.param(mutate("pods/0/hostnetwork", True), "pods[0].hostnetwork", "unknown field", id="pod-field-typo"),
    pytest.param(mutate("pods/0/name", "Web_1"), "pods[0].name", "'Web_1' is not an RFC 1123 subdomain",
                 id="pod-name-invalid"),
    pytest.param(mutate("namespaces/X", {}), "namespaces.X", "'X' is not an RFC 1123 label", id="namespace-name"),
    pytest.param(mutate("pods/0/labels", {"app": "a b"}), "pods[0].labels.app", "'a b' is not a valid label value",
                 id="label-value-invalid"),
    pytest.param(mutate("pods/0/labels", {"/app": "a"}), "pods[0].labels./app", "'/app' is not a valid label key",
                 id="label-key-invalid"),
    pytest.param(mutate("pods/0/ports/0/name", "HTTP"), "pods[0].ports[0].name", "'HTTP' is not a port name",
                 id="port-name-invalid"),
    pytest.param(mutate("pods/0/ports", [{"port": 80, "name": "web"}, {"port": 81, "name": "web"}]),
                 "pods[0].ports[1].name", "duplicate port name 'web'", id="port-name-duplicate"),
    pytest.param(mutate("pods/0/ports", [{"port": 80}, {"port": 80, "protocol": "TCP"}]),
                 "pods[0].ports[1].port", "duplicate port 80/TCP", id="port-duplicate"),
    pytest.param(mutate("external/0/ip", "192.0.2"), "external[0].ip", "'192.0.2' is not an IP address",
                 id="external-bad-ip"),
    pytest.param(mutate("external/0/ip", "198.18.5.5"), "external[0].ip", "reserved for nodes and pods",
                 id="external-in-pod-range"),
    pytest.param(mutate("policies/0", "p"), "policies[0]", "must be an object, not str", id="policy-not-object"),
    pytest.param(mutate("policies/0/metadata/namespace", "zz"), "policies[0].metadata.namespace",
                 "namespace 'zz' is not declared", id="policy-undeclared-namespace"),
    pytest.param(mutate("policies/0/metadata", {"name": "q"}), "policies[0].metadata.namespace",
                 "namespace 'default' is not declared", id="policy-default-namespace-undeclared"),
    pytest.param(mutate("probes/0/expect", "maybe"), "probes[0].expect", "must be 'allow' or 'deny'",
                 id="bad-expect"),
    pytest.param(mutate("probes/0/port", 0), "probes[0].port", "0 is not between 1 and 65535", id="probe-port"),
    pytest.param(mutate("probes/0/from", "x/zz"), "probes[0].from", "no pod 'x/zz' at this point",
                 id="probe-unknown-pod"),
    pytest.param(mutate("probes/0/to", "external:moon"), "probes[0].to", "no external host 'moon'",
                 id="probe-unknown-external"),
    pytest.param(mutate("probes/0/protocol", "tcp"), "probes[0].protocol", "'tcp' is not TCP, UDP or SCTP",
                 id="probe-protocol"),
    pytest.param(mutate("policies/0/spec/ingress/0/from/0/ipBlock/cidr", "{{ip x/nope}}/32"),
                 "policies[0].spec.ingress[0].from[0].ipBlock.cidr", "template refers to 'x/nope'",
                 id="template-unknown-pod"),
    pytest.param(mutate("policies/0/spec/ingress/0/from/0/ipBlock/cidr", "{{address x/a}}"),
                 "policies[0].spec.ingress[0].from[0].ipBlock.cidr", "{{address x/a}} is not a template",
                 id="template-unknown-kind"),
    pytest.param(mutate("policies/0/spec/ingress/0/from/0/ipBlock/cidr", "{{prefix x/a 33}}"),
                 "policies[0].spec.ingress[0].from[0].ipBlock.cidr", "prefix length must be 0..32",
                 id="template-prefix-too-long"),
    pytest.param(mutate("steps", [{"actions": []}]), "steps[0].name", "required", id="step-without-name"),
    pytest.param(mutate("steps", [{**STEP, "actions": [{"label-pod": {}, "delete-pod": "x/a"}]}]),
                 "steps[0].actions[0]", "must have exactly one of", id="action-two-kinds"),
    pytest.param(mutate("steps", [{**STEP, "actions": [{"relabel": {}}]}]), "steps[0].actions[0]",
                 "must have exactly one of", id="action-unknown"),
    pytest.param(mutate("steps", [{**STEP, "actions": [{"delete-pod": "x/a"}],
                                   "probes": [{"from": "x/a", "to": "x/b", "port": 1, "expect": "deny"}]}]),
                 "steps[0].probes[0].from", "no pod 'x/a' at this point", id="probe-of-deleted-pod"),
    pytest.param(mutate("steps", [{**STEP, "actions": [{"label-pod": {"pod": "x/q", "labels": {}}}]}]),
                 "steps[0].actions[0].label-pod.pod", "no pod 'x/q' at this point", id="label-unknown-pod"),
    pytest.param(mutate("steps", [{**STEP, "actions": [{"label-namespace": {"namespace": "q", "labels": {}}}]}]),
                 "steps[0].actions[0].label-namespace.namespace", "no namespace 'q'", id="label-unknown-namespace"),
    pytest.param(mutate("steps", [{**STEP, "actions": [{"delete": {"kind": "NetworkPolicy", "name": "p"}}]}]),
                 "steps[0].actions[0].delete", "no NetworkPolicy default/p to delete", id="delete-unknown-policy"),
    pytest.param(mutate("steps", [{**STEP, "actions": [{"delete": {"kind": "Pod", "name": "a"}}]}]),
                 "steps[0].actions[0].delete.kind", "delete takes NetworkPolicy or Namespace", id="delete-bad-kind"),
    pytest.param(mutate("steps", [{**STEP, "actions": [{"apply": {"kind": "Pod"}}]}]),
                 "steps[0].actions[0].apply.kind", "apply takes a NetworkPolicy or a Namespace", id="apply-bad-kind"),
    pytest.param(mutate("steps", [{**STEP, "actions": [{"create-pod": {"namespace": "x", "name": "a"}}]}]),
                 "steps[0].actions[0].create-pod.name", "pod x/a already exists", id="create-existing-pod"),
    pytest.param(mutate("steps", [{**STEP, "actions": [{"delete": {"kind": "Namespace", "name": "x"}}]}]),
                 "steps[0].actions[0].delete", "namespace x still has pods", id="delete-busy-namespace"),
]


@pytest.mark.parametrize(("doc", "field", "message"), ERRORS)
def test_case_errors(tmp_path: Path, doc: Any, field: str, message: str) -> None:
    p = write(tmp_path, doc)
    with pytest.raises(CaseError) as ei:
        cases.load([p])
    assert ei.value.file == str(p)
    assert ei.value.field == field
    assert message in ei.value.message
    assert str(ei.value).startswith(f"{p}: {field}: ")


@pytest.mark.parametrize(("text", "message"), [
    pytest.param("{", "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
                 id="bad-json"),
    pytest.param("[]", "must be an object, not list", id="not-object"),
])
def test_unreadable_files(tmp_path: Path, text: str, message: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(CaseError) as ei:
        cases.load([p])
    assert ei.value.message == message


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    items = cases.load_each([tmp_path / "nope.json", tmp_path])
    assert [type(i) for i in items] == [CaseError, CaseError]
    assert isinstance(items[0], CaseError) and items[0].message == "No such file or directory"
    assert isinstance(items[1], CaseError) and items[1].message == "folder holds no *.json case files"


def test_folder_sorted_and_errors_per_file(tmp_path: Path) -> None:
    write(tmp_path, {**base(), "name": "second"}, "b.json")
    write(tmp_path, {**base(), "name": "first"}, "a.json")
    write(tmp_path, {**base(), "nodes": -1}, "c.json")
    (tmp_path / "notes.txt").write_text("not a case")
    items = cases.load_each([tmp_path])
    assert [i.name if isinstance(i, cases.Case) else "error" for i in items] == ["first", "second", "error"]


def test_loaded_values() -> None:
    c = cases.parse_case(base(), "f.json")
    assert c.file == "f.json" and c.nodes == 2 and c.name == "t"
    assert c.pods[0] == PodDecl("x", "a", {"app": "a"}, (cases.PortDecl(80, "TCP", "http"),))
    assert c.probes[0] == cases.Probe("x/b", "x/a", 80, "TCP", "allow", "probes[0]")
    assert c.external[0].ports == (cases.PortDecl(53, "UDP", ""),)
    d = base()
    del d["nodes"]
    assert cases.parse_case(d).nodes == 2


# --------------------------------------------------------------------------
# Address plan and templates


def test_address_plan_pins_the_layout() -> None:
    c = cases.parse_case(base())
    plan = cases.plan_addresses(c)
    # pods numbered in case order; without node: k % nodes
    assert plan.pod_nodes == {"x/a": 0, "x/b": 1, "y/c": 1, "y/h": 1}
    assert plan.pod_ips == {"x/a": "198.18.0.2", "x/b": "198.18.1.2", "y/c": "198.18.1.3", "y/h": "198.19.0.2"}
    assert [cases.node_ip(i) for i in range(3)] == ["198.19.0.1", "198.19.0.2", "198.19.0.3"]
    assert (cases.pod_cidr(4), cases.gateway_ip(4), cases.node_name(4)) == ("198.18.4.0/24", "198.18.4.1", "node-4")
    assert plan.lookup("external:net") == "192.0.2.10"
    # steps: lowest free address first, deleted addresses reused, round-robin continues
    plan.remove_pod("x/b")
    assert plan.add_pod(PodDecl("x", "n1", node=1)) == "198.18.1.2"
    assert plan.add_pod(PodDecl("x", "n2", node=1)) == "198.18.1.4"
    assert plan.ordinal == 6
    assert plan.add_pod(PodDecl("x", "n3")) == "198.18.0.3"  # ordinal 6 -> node 0
    assert plan.add_pod(PodDecl("x", "n4")) == "198.18.1.5"  # ordinal 7 -> node 1
    with pytest.raises(KeyError):
        plan.lookup("x/gone")


def test_plan_runs_out_of_addresses() -> None:
    plan = cases.AddressPlan(1)
    for i in range(253):
        plan.add_pod(PodDecl("x", f"p{i}"))
    with pytest.raises(ValueError, match="no free pod address"):
        plan.add_pod(PodDecl("x", "one-too-many"))


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param("{{ip x/a}}/32", "10.0.0.5/32", id="ip"),
    pytest.param("{{ ip   x/a }}", "10.0.0.5", id="spaces"),
    pytest.param("{{prefix x/a 4}}", "0.0.0.0/4", id="prefix-4"),
    pytest.param("{{prefix x/a 24}}", "10.0.0.0/24", id="prefix-24"),
    pytest.param("{{prefix x/v6 64}}", "fd00:1::/64", id="prefix-v6"),
    pytest.param("{{ip external:e}} and {{ip x/a}}", "192.0.2.1 and 10.0.0.5", id="two-in-one"),
    pytest.param({"a": ["{{ip x/a}}", 3, None, {"b": "{{ip x/a}}"}]},
                 {"a": ["10.0.0.5", 3, None, {"b": "10.0.0.5"}]}, id="nested"),
    pytest.param("no template {here}", "no template {here}", id="untouched"),
])
def test_substitute(value: Any, expected: Any) -> None:
    addrs = {"x/a": "10.0.0.5", "x/v6": "fd00:1::9", "external:e": "192.0.2.1"}
    before = copy.deepcopy(value)
    assert cases.substitute(value, addrs.__getitem__) == expected
    assert value == before


def test_substitute_error_names_field() -> None:
    with pytest.raises(ValueError, match=r"^spec\.x\[1\]: template refers to 'x/b'"):
        cases.substitute({"x": ["ok", "{{ip x/b}}"]}, {}.__getitem__, "spec")


def test_template_prefix_example_from_format() -> None:
    # FORMAT.md: {{prefix x/b 4}} -> 192.0.0.0/4 for a pod in 198.18.0.0/15
    assert cases.substitute("{{prefix x/b 4}}", {"x/b": "198.18.1.2"}.__getitem__) == "192.0.0.0/4"


# --------------------------------------------------------------------------
# Objects and steps


def test_initial_objects() -> None:
    st = cases.case_stages(cases.parse_case(base()))
    ops = st[0].ops
    assert [(o.kind, o.namespace, o.name) for o in ops] == [
        ("Node", "", "node-0"), ("Node", "", "node-1"), ("Namespace", "", "x"), ("Namespace", "", "y"),
        ("Pod", "x", "a"), ("Pod", "x", "b"), ("Pod", "y", "c"), ("Pod", "y", "h"), ("NetworkPolicy", "x", "p")]
    node1, pod_a, pod_h, pol = ops[1].obj, ops[4].obj, ops[7].obj, ops[8].obj
    assert node1 is not None and pod_a is not None and pod_h is not None and pol is not None
    assert node1["spec"]["podCIDR"] == "198.18.1.0/24"
    assert node1["status"]["addresses"][0] == {"type": "InternalIP", "address": "198.19.0.2"}
    assert pod_a["spec"]["nodeName"] == "node-0"
    assert pod_a["status"]["podIPs"] == [{"ip": "198.18.0.2"}] and pod_a["status"]["phase"] == "Running"
    assert pod_a["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "http"}]
    assert pod_h["spec"]["hostNetwork"] is True and pod_h["status"]["podIP"] == "198.19.0.2"
    peers = pol["spec"]["ingress"][0]["from"]
    assert peers[0]["ipBlock"]["cidr"] == "198.18.1.2/32"
    assert peers[1]["ipBlock"] == {"cidr": "198.18.0.0/16", "except": ["192.0.2.10/32"]}


def test_policy_without_namespace_goes_to_default() -> None:
    d = base()
    d["namespaces"]["default"] = {"labels": {}}
    d["policies"] = [{"kind": "NetworkPolicy", "metadata": {"name": "q"}, "spec": {}}]
    st = cases.case_stages(cases.parse_case(d))
    op = st[0].ops[-1]
    assert (op.namespace, op.name) == ("default", "q")
    assert op.obj is not None and op.obj["metadata"]["namespace"] == "default"
    assert d["policies"][0]["metadata"] == {"name": "q"}  # the case itself is untouched


def test_step_actions_become_object_operations() -> None:
    d = base()
    d["steps"] = [
        {"name": "one", "actions": [
            {"label-pod": {"pod": "x/a", "labels": {"app": "z", "peer": "{{ip x/b}}"}}},
            {"label-namespace": {"namespace": "y", "labels": {"team": "c"}}},
            {"delete-pod": "x/b"},
            {"create-pod": {"namespace": "x", "name": "n", "labels": {"new": "1"}, "node": 1}},
            {"apply": {"kind": "NetworkPolicy", "metadata": {"name": "q", "namespace": "x"},
                       "spec": {"ingress": [{"from": [{"ipBlock": {"cidr": "{{ip x/n}}/32"}}]}]}}},
            {"apply": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "w", "labels": {"k": "v"}}}},
        ], "probes": [{"from": "x/n", "to": "x/a", "port": 80, "protocol": "TCP", "expect": "deny"}]},
        {"name": "two", "actions": [
            {"delete": {"kind": "NetworkPolicy", "namespace": "x", "name": "q"}},
            {"delete": {"kind": "Namespace", "name": "w"}},
        ], "probes": []},
    ]
    st = cases.case_stages(cases.parse_case(d))
    assert [s.step for s in st] == [None, "one", "two"]
    ops = st[1].ops
    assert [(o.kind, o.namespace, o.name, o.is_delete) for o in ops] == [
        ("Pod", "x", "a", False), ("Namespace", "", "y", False), ("Pod", "x", "b", True),
        ("Pod", "x", "n", False), ("NetworkPolicy", "x", "q", False), ("Namespace", "", "w", False)]
    relabelled, created, policy = ops[0].obj, ops[3].obj, ops[4].obj
    assert relabelled is not None and relabelled["metadata"]["labels"] == {"app": "z", "peer": "198.18.1.2"}
    assert relabelled["status"]["podIP"] == "198.18.0.2"  # same address after relabel
    assert created is not None and created["status"]["podIP"] == "198.18.1.2"  # x/b's freed address
    assert policy is not None and policy["spec"]["ingress"][0]["from"][0]["ipBlock"]["cidr"] == "198.18.1.2/32"
    assert [(o.kind, o.name, o.is_delete) for o in st[2].ops] == [("NetworkPolicy", "q", True),
                                                                 ("Namespace", "w", True)]
    assert st[1].probes[0].field == "steps[0].probes[0]"


def test_result_document() -> None:
    pr = cases.Probe("x/a", "external:net", 53, "UDP", "deny", "probes[0]")
    ok = cases.ProbeResult(None, pr, "deny")
    bad = cases.ProbeResult("s1", pr, "allow")
    err = cases.ProbeResult("s1", pr, "deny", "no route")
    doc = cases.result_document("evaluate", [cases.CaseResult("c1", [ok, bad]), cases.CaseResult("c2", [err])])
    assert doc == {
        "mode": "evaluate",
        "cases": [
            {"name": "c1", "passed": 1, "failed": 1, "results": [
                {"step": None, "from": "x/a", "to": "external:net", "port": 53, "protocol": "UDP",
                 "expect": "deny", "observed": "deny"},
                {"step": "s1", "from": "x/a", "to": "external:net", "port": 53, "protocol": "UDP",
                 "expect": "deny", "observed": "allow"}]},
            {"name": "c2", "passed": 0, "failed": 1, "results": [
                {"step": "s1", "from": "x/a", "to": "external:net", "port": 53, "protocol": "UDP",
                 "expect": "deny", "observed": "deny", "error": "no route"}]}],
        "passed": 1,
        "failed": 2,
    }
    buf = io.StringIO()
    cases.write_result(doc, buf)
    assert json.loads(buf.getvalue()) == doc and buf.getvalue().endswith("}\n")
