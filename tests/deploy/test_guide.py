"""docs/install-aks.md stays true to what it describes: the paths, names,
settings, RPCs and URLs it tells users to type exist, and its own-overlay
snippet renders with the user's image."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.deploy import manifests as m
from tests.deploy.manifests import Obj

GUIDE = m.REPO / "docs" / "install-aks.md"
PROTO = m.REPO / "proto" / "stockade" / "v1" / "stockade.proto"
STATUS_WEB = m.REPO / "controller" / "status_web.py"


@pytest.fixture(scope="module")
def guide() -> str:
    return GUIDE.read_text()


def test_every_kustomization_the_guide_applies_exists(guide: str) -> None:
    applied = set(re.findall(r"kubectl (?:apply|delete) -k (deploy/\S+)", guide))
    assert applied >= {"deploy/overlays/aks-kubenet", "deploy/cleanup"}
    for path in applied:
        assert path in {p.relative_to(m.REPO).as_posix() for p in m.TARGETS.values()}, path
    for path in set(re.findall(r"`(deploy/[\w/.-]+)`", guide)):
        assert (m.REPO / path).exists(), f"the guide names {path}, which does not exist"


def test_every_setting_is_documented(guide: str, rendered: dict[str, list[Obj]]) -> None:
    keys = {k for o in m.of_kind(rendered["aks-kubenet"], "ConfigMap") for k in o["data"]}
    assert "STOCKADE_RECONCILE_PERIOD" in keys
    settings = guide.split("## Settings", 1)[1].split("\n## ", 1)[0]
    undocumented = sorted(k for k in keys if f"| `{k}` |" not in settings)
    assert not undocumented, f"settings missing from the guide's Settings tables: {undocumented}"


def test_names_in_the_guide_commands_exist(guide: str, rendered: dict[str, list[Obj]]) -> None:
    install, cleanup = rendered["aks-kubenet"], rendered["cleanup"]
    for ns, ref in re.findall(r"kubectl -n ([\w-]+) rollout status (\w+/[\w-]+)", guide):
        kind = {"deploy": "Deployment", "ds": "DaemonSet"}[ref.split("/")[0]]
        objs = cleanup if ns == "stockade-cleanup" else install
        assert m.one(objs, kind, ref.split("/")[1])["metadata"]["namespace"] == ns
    svc_ports = {p["port"] for p in m.one(install, "Service", m.CONTROLLER)["spec"]["ports"]}
    for port in re.findall(r"port-forward svc/stockade-controller (\d+)", guide):
        assert int(port) in svc_ports
    agent_labels = m.one(install, "DaemonSet", m.AGENT)["spec"]["template"]["metadata"]["labels"]
    for key, value in re.findall(r"get pods -l ([\w./-]+)=([\w-]+)", guide):
        assert agent_labels.get(key) == value


def test_grpc_methods_in_the_guide_are_in_the_proto(guide: str) -> None:
    proto = PROTO.read_text()
    services: dict[str, set[str]] = {}
    for name, body in re.findall(r"service (\w+) \{(.*?)\n\}", proto, re.S):
        services[name] = set(re.findall(r"rpc (\w+)\(", body))
    assert re.search(r"^package stockade\.v1;", proto, re.M)
    used = re.findall(r"stockade\.v1\.(\w+)(?:/(\w+))?", guide)
    assert used
    for service, method in used:
        assert service in services, f"no service {service} in {PROTO.name}"
        assert not method or method in services[service], f"no rpc {service}/{method}"


def test_status_urls_in_the_guide_are_served(guide: str) -> None:
    routes = set(re.findall(r"add_get\(\"([^\"]+)\"", STATUS_WEB.read_text()))
    pattern_of = {re.sub(r"\{\w+\}", "[^/]+", r): r for r in routes}
    urls = re.findall(r"`(/(?:api/v1/[^`?]*|metrics|healthz|readyz))[`?]", guide)
    assert urls
    for url in urls:
        generic = re.sub(r"\b[A-Z]+(?:/[A-Z]+)?$", "X", url)  # NODE, NAMESPACE/NAME placeholders
        assert any(re.fullmatch(p, generic) or re.fullmatch(p, url) for p in pattern_of), f"{url} is not served"


def test_own_overlay_snippet_renders_with_the_users_image(guide: str, tmp_path: Path) -> None:
    if m.kubectl() is None:
        pytest.skip("kubectl is not installed")
    snippet = re.search(r"cat > my-stockade/kustomization\.yaml <<'EOF'\n(.*?)\n\s*EOF", guide, re.S)
    assert snippet, "the guide's own-overlay example is missing"
    body = "\n".join(line[4:] if line.startswith("    ") else line for line in snippet.group(1).splitlines())
    (tmp_path / "my-stockade").mkdir()
    (tmp_path / "my-stockade" / "kustomization.yaml").write_text(body + "\n")
    os.symlink(m.DEPLOY, tmp_path / "deploy")
    objs = m.parse(m.kustomize_yaml(tmp_path / "my-stockade"))
    images = {c["image"] for w in m.workloads(objs) for c in m.pod_spec(w)["containers"]}
    assert images == {"REGISTRY.azurecr.io/stockade:0.1.0"}


def test_the_guides_recipe_is_the_labs_recipe_01(guide: str) -> None:
    case_path = m.REPO / "stockade" / "lab" / "recipes" / "recipe-01-deny-all-traffic-to-an-application.json"
    assert case_path.relative_to(m.REPO).as_posix() in guide
    policy_yaml = re.search(r"apply -f - <<'EOF'\n(\s*apiVersion: networking\.k8s\.io/v1\n.*?)\n\s*EOF", guide, re.S)
    assert policy_yaml, "the guide's recipe policy is missing"
    body = "\n".join(line[4:] for line in policy_yaml.group(1).splitlines())
    (policy,) = m.parse(body)
    (expected,) = json.loads(case_path.read_text())["policies"]
    assert policy == expected
