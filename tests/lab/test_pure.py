"""Pure pieces of the lab: matrix rendering, pod wiring from pod objects,
outside-host ports, kubeconfig handling."""

from __future__ import annotations

import json
from pathlib import Path

from stockade import cases
from stockade.lab import matrix
from stockade.lab.pipeline import KubeConfig, _not_converged, local_kubeconfig, object_path, read_kubeconfig
from stockade.lab.runner import external_ports, pod_wiring


def test_matrix_marks_allow_deny_error_and_self() -> None:
    targets = {"d/web": (80, "TCP"), "external:internet": (53, "UDP")}
    text = matrix.render(["d/a", "d/web"], targets,
                         {("d/a", "d/web"): "allow", ("d/a", "external:internet"): "deny",
                          ("d/web", "external:internet"): None}, "t")
    lines = text.splitlines()
    assert lines[0] == "t"
    assert "d/web:80" in lines[1] and "ext:internet:53/udp" in lines[1]
    assert lines[2].split()[1:] == [matrix.ALLOW, matrix.DENY]
    assert lines[3].split()[1:] == [matrix.SELF, matrix.ERROR]
    assert [(c.src, c.dst) for c in matrix.cells(["d/a", "d/web"], targets)] == [
        ("d/a", "d/web"), ("d/a", "external:internet"), ("d/web", "external:internet")]


def _case() -> cases.Case:
    return cases.parse_case({
        "name": "t", "nodes": 2,
        "namespaces": {"d": {"labels": {}}},
        "pods": [{"namespace": "d", "name": "a", "ports": [{"port": 80, "protocol": "TCP"}]},
                 {"namespace": "d", "name": "b", "ports": [{"port": 53, "protocol": "UDP"}]},
                 {"namespace": "d", "name": "h", "hostNetwork": True, "node": 1,
                  "ports": [{"port": 8080, "protocol": "TCP"}]}],
        "external": [{"name": "internet", "ip": "192.0.2.10", "ports": [{"port": 443, "protocol": "TCP"}]}],
        "probes": [{"from": "d/a", "to": "external:internet", "port": 80, "protocol": "TCP", "expect": "deny"}],
        "steps": [{"name": "s", "actions": [],
                   "probes": [{"from": "d/a", "to": "external:internet", "port": 53, "protocol": "UDP",
                               "expect": "deny"}]}],
    })


def test_pod_wiring_follows_the_address_plan() -> None:
    st = cases.case_stages(_case())
    pods = [pod_wiring(op.obj) for op in st[0].ops if op.kind == "Pod" and op.obj is not None]
    assert pods == [("d/a", 0, "198.18.0.2", False, [(80, "TCP")]),
                    ("d/b", 1, "198.18.1.2", False, [(53, "UDP")]),
                    ("d/h", 1, "198.19.0.2", True, [(8080, "TCP")])]


def test_outside_hosts_serve_listed_and_probed_ports() -> None:
    c = _case()
    assert external_ports(c, cases.case_stages(c)) == {"internet": [(53, "UDP"), (80, "TCP"), (443, "TCP")]}


def test_object_paths() -> None:
    assert object_path("Pod", "x") == "/api/v1/namespaces/x/pods"
    assert object_path("Node", "", "node-0") == "/api/v1/nodes/node-0"
    assert object_path("NetworkPolicy", "x", "p") == "/apis/networking.k8s.io/v1/namespaces/x/networkpolicies/p"


def test_kubeconfig_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "kc"
    p.write_text(local_kubeconfig(KubeConfig("http://198.19.0.250:6443", "tok"), "127.0.0.1:1234"))
    kc = read_kubeconfig(str(p))
    assert kc.server == "http://127.0.0.1:1234" and kc.token == "tok"
    assert json.loads(p.read_text())["current-context"] == "stockade-lab"


def _status(**over: object) -> dict[str, object]:
    st: dict[str, object] = {
        "ready": True, "writer": {"queued": 0, "batches": 3},
        "watches": [{"kind": "Pod", "resource_version": "12"}],
        "nodes": [{"node": "node-0", "connected": True, "in_sync": True, "applied_version": 4, "desired_version": 4}],
    }
    st.update(over)
    return st


def test_convergence_needs_the_change_seen_and_every_agent_acked() -> None:
    assert _not_converged(_status(), {"Pod": 12}, 1) == ""
    assert "not seen Pod resourceVersion 13" in _not_converged(_status(), {"Pod": 13}, 1)
    assert "not connected" in _not_converged(_status(), {}, 2)
    lagging = [{"node": "node-0", "connected": True, "in_sync": False, "applied_version": 3, "desired_version": 4}]
    assert "applied version 3, desired 4" in _not_converged(_status(nodes=lagging), {}, 1)
    assert "not ready" in _not_converged(_status(ready=False), {}, 1)
    assert "queued" in _not_converged(_status(writer={"queued": 2}), {}, 1)


def test_packaged_recipes_match_the_shared_cases() -> None:
    """The demo's copies must not drift from shared/cases/recipes."""
    import pytest

    from stockade.lab import recipes

    shared = Path(__file__).resolve().parents[3] / "shared" / "cases" / "recipes"
    if not shared.is_dir():
        pytest.skip(f"no shared cases beside the repository ({shared})")
    mine = {p.name: p.read_bytes() for p in recipes.directory().iterdir() if p.suffix in (".json", ".md")}
    theirs = {p.name: p.read_bytes() for p in shared.iterdir() if p.suffix in (".json", ".md")}
    assert mine == theirs


def test_cases_share_a_lab_only_when_nodes_and_outside_hosts_agree() -> None:
    from stockade.lab.runner import Session, groups

    def case(name: str, nodes: int, ext: list[tuple[str, str]]) -> tuple[cases.Case, list[cases.Stage]]:
        c = cases.parse_case({"name": name, "nodes": nodes, "namespaces": {}, "pods": [], "probes": [],
                              "external": [{"name": n, "ip": ip} for n, ip in ext]})
        return c, cases.case_stages(c)

    a = case("a", 2, [("internet", "192.0.2.10")])
    b = case("b", 2, [])
    c = case("c", 2, [("internet", "192.0.2.11")])  # same name, other address
    d = case("d", 3, [])
    e = case("e", 3, [("dns", "192.0.2.53")])
    assert [[x[0].name for x in g] for g in groups([a, b, c, d, e], isolate=False)] == [["a", "b"], ["c"], ["d", "e"]]
    assert [[x[0].name for x in g] for g in groups([a, b], isolate=True)] == [["a"], ["b"]]
    pending = [a, b]
    s = Session(pending)
    pending.pop(0)  # the runner pops what it runs; the session still knows every case's outside ports
    assert [x[0].name for x in s.group] == ["a", "b"]
