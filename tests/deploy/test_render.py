"""The kustomizations render offline, and the rendered objects say what the
install promises: names, ports, probes, privileges, rollout, settings."""

from __future__ import annotations

import copy
import tomllib

import pytest

from tests.deploy import manifests as m
from tests.deploy.manifests import Obj

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}


def _version() -> str:
    with open(m.REPO / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def _container(obj: Obj, name: str) -> Obj:
    found = [c for c in m.pod_spec(obj)["containers"] if c["name"] == name]
    assert len(found) == 1, f"{m.ident(obj)} has no single container {name!r}"
    return found[0]


def _named_port(container: Obj, port: int | str) -> int:
    if isinstance(port, int):
        return port
    found = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert found, f"container {container['name']} has no port named {port!r}"
    return int(found[0])


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("target", list(m.TARGETS))
def test_renders_offline_with_unique_names_in_one_namespace(rendered: dict[str, list[Obj]], target: str) -> None:
    objs = rendered[target]
    assert objs, f"{target} rendered nothing"
    idents = [m.ident(o) for o in objs]
    assert len(idents) == len(set(idents)), f"duplicate objects in {target}: {idents}"
    expected_ns = "stockade-cleanup" if target == "cleanup" else m.NAMESPACE
    for o in objs:
        if o["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in o["metadata"], m.ident(o)
        else:
            assert o["metadata"].get("namespace") == expected_ns, m.ident(o)
    namespaces = [o["metadata"]["name"] for o in m.of_kind(objs, "Namespace")]
    assert namespaces == [expected_ns], "each kustomization creates its own namespace, and only that one"


@pytest.mark.parametrize("overlay", m.INSTALLS)
def test_install_has_every_part(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    kinds_names = {(o["kind"], o["metadata"]["name"]) for o in objs if o["kind"] != "ConfigMap"}
    assert kinds_names == {
        ("Namespace", m.NAMESPACE),
        ("ServiceAccount", m.CONTROLLER),
        ("ClusterRole", m.CONTROLLER),
        ("ClusterRoleBinding", m.CONTROLLER),
        ("Role", m.CONTROLLER),
        ("RoleBinding", m.CONTROLLER),
        ("Deployment", m.CONTROLLER),
        ("PodDisruptionBudget", m.CONTROLLER),
        ("Service", m.CONTROLLER),
        ("ServiceAccount", m.AGENT),
        ("DaemonSet", m.AGENT),
    }
    configmaps = sorted(o["metadata"]["name"].rsplit("-", 1)[0] for o in m.of_kind(objs, "ConfigMap"))
    assert configmaps == ["stockade-agent-config", "stockade-controller-config"], "content-hashed names expected"


AGENT_ARGS = [
    "agent",
    "--node-name", "<spec.nodeName>",
    "--controller", "stockade-controller.stockade-system.svc:7700",
    "--grpc-listen", "0.0.0.0:7702",
    "--http-listen", "0.0.0.0:7703",
    "--iptables-backend", "auto",
    "--reconcile-period", "60",
    "--state-dir", "/var/lib/stockade",
    "--log-level", "INFO",
    "--ca-file", "/etc/stockade/ca/ca.crt",
    "--token-file", "/var/run/secrets/stockade/token",
]


def test_overlays_differ_only_in_the_bridged_flag(rendered: dict[str, list[Obj]]) -> None:
    def without_bridged(objs: list[Obj]) -> list[Obj]:
        out = copy.deepcopy(objs)
        for c in m.pod_spec(m.one(out, "DaemonSet", m.AGENT))["containers"]:
            c["args"] = [a for a in c["args"] if a != "--bridged"]
        return out

    kubenet, routed = rendered["aks-kubenet"], rendered["routed"]
    assert "--bridged" in _container(m.one(kubenet, "DaemonSet", m.AGENT), "agent")["args"]
    assert "--bridged" not in _container(m.one(routed, "DaemonSet", m.AGENT), "agent")["args"]
    assert without_bridged(kubenet) == routed


@pytest.mark.parametrize(
    ("overlay", "expected"),
    [pytest.param("aks-kubenet", [*AGENT_ARGS, "--bridged"], id="aks-kubenet"),
     pytest.param("routed", AGENT_ARGS, id="routed")],
)
def test_agent_command_line_after_env_expansion(rendered: dict[str, list[Obj]], overlay: str,
                                                expected: list[str]) -> None:
    objs = rendered[overlay]
    agent = _container(m.one(objs, "DaemonSet", m.AGENT), "agent")
    assert m.command_line(objs, agent) == expected


@pytest.mark.parametrize("overlay", m.INSTALLS)
def test_controller_deployment(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    dep = m.one(objs, "Deployment", m.CONTROLLER)
    spec = m.pod_spec(dep)
    ctr = _container(dep, "controller")
    assert m.command_line(objs, ctr) == [
        "controller", "--grpc-listen", "0.0.0.0:7700", "--http-listen", "0.0.0.0:7701",
        "--replica-id", "<metadata.name>", "--log-level", "INFO", "--max-stream-age", "3600",
    ]
    assert dep["spec"]["replicas"] == 2
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert _labels_match(dep["spec"]["selector"]["matchLabels"], pod_labels)
    # Spread across nodes: a hard hostname spread constraint selecting these pods.
    spreads = [t for t in spec.get("topologySpreadConstraints", [])
               if t["topologyKey"] == "kubernetes.io/hostname" and t["whenUnsatisfiable"] == "DoNotSchedule"]
    assert spreads and spreads[0]["maxSkew"] == 1
    assert _labels_match(spreads[0]["labelSelector"]["matchLabels"], pod_labels)
    # Probes on the status port.
    assert (ctr["readinessProbe"]["httpGet"]["path"], _named_port(ctr, ctr["readinessProbe"]["httpGet"]["port"])) \
        == ("/readyz", 7701)
    assert (ctr["livenessProbe"]["httpGet"]["path"], _named_port(ctr, ctr["livenessProbe"]["httpGet"]["port"])) \
        == ("/healthz", 7701)
    assert {"cpu", "memory"} <= set(ctr["resources"]["requests"]) and "memory" in ctr["resources"]["limits"]
    # Least privilege.
    pod_sc, sc = spec.get("securityContext", {}), ctr["securityContext"]
    assert pod_sc.get("runAsNonRoot") is True and pod_sc.get("runAsUser", 0) != 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert not spec.get("hostNetwork") and not sc.get("privileged")
    assert spec["serviceAccountName"] == m.CONTROLLER


@pytest.mark.parametrize("overlay", m.INSTALLS)
def test_pdb_and_service_select_the_controller(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    dep = m.one(objs, "Deployment", m.CONTROLLER)
    ctr = _container(dep, "controller")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    pdb = m.one(objs, "PodDisruptionBudget", m.CONTROLLER)
    assert pdb["spec"]["minAvailable"] == 1
    assert _labels_match(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    svc = m.one(objs, "Service", m.CONTROLLER)
    assert _labels_match(svc["spec"]["selector"], pod_labels)
    ports = {p["port"]: _named_port(ctr, p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {7700: 7700, 7701: 7701}
    # Other objects must not select the controller's pods by accident.
    agent_labels = m.one(objs, "DaemonSet", m.AGENT)["spec"]["template"]["metadata"]["labels"]
    assert not _labels_match(svc["spec"]["selector"], agent_labels)


@pytest.mark.parametrize("overlay", m.INSTALLS)
def test_agent_daemonset(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    ds = m.one(objs, "DaemonSet", m.AGENT)
    spec = m.pod_spec(ds)
    ctr = _container(ds, "agent")
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["tolerations"] == [{"operator": "Exists"}], "every taint tolerated"
    assert spec["priorityClassName"] == "system-node-critical"
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    env = {e["name"]: e for e in ctr["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    for probe in ("readinessProbe", "livenessProbe"):
        assert ctr[probe]["httpGet"] == {"path": "/healthz", "port": 7703}, probe
    sc = ctr["securityContext"]
    assert sc.get("privileged") is not True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    assert {"cpu", "memory"} <= set(ctr["resources"]["requests"]) and "memory" in ctr["resources"]["limits"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {vm["mountPath"]: vm for vm in ctr["volumeMounts"]}

    def host_path(mount_path: str) -> Obj:
        return volumes[mounts[mount_path]["name"]]["hostPath"]  # type: ignore[no-any-return]

    assert host_path("/run/xtables.lock") == {"path": "/run/xtables.lock", "type": "FileOrCreate"}
    assert host_path("/lib/modules")["path"] == "/lib/modules" and mounts["/lib/modules"]["readOnly"] is True
    assert host_path("/var/lib/stockade")["path"] == "/var/lib/stockade"
    assert not mounts["/var/lib/stockade"].get("readOnly")
    hostpaths = {v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert hostpaths == {"/run/xtables.lock", "/lib/modules", "/var/lib/stockade"}, "no other host access"
    for forbidden in ("hostPID", "hostIPC"):
        assert not spec.get(forbidden), forbidden


def test_surge_check_passes_and_catches_declared_ports(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["aks-kubenet"]
    assert m.surge_problems(objs) == []
    broken = copy.deepcopy(objs)
    _container(m.one(broken, "DaemonSet", m.AGENT), "agent")["ports"] = [{"containerPort": 7703}]
    (problem,) = m.surge_problems(broken)
    assert "declares ports [7703]" in problem


@pytest.mark.parametrize("target", list(m.TARGETS))
def test_every_image_is_the_project_release(rendered: dict[str, list[Obj]], target: str) -> None:
    images = {c["image"] for w in m.workloads(rendered[target]) for c in m.pod_spec(w)["containers"]}
    assert images == {f"ghcr.io/stockade/stockade:{_version()}"}


def test_cleanup_daemonset_runs_the_agent_cleanup_once_per_node(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["cleanup"]
    (ds,) = m.of_kind(objs, "DaemonSet")
    spec = m.pod_spec(ds)
    (ctr,) = spec["containers"]
    script = " ".join(m.command_line(objs, ctr))
    assert "stockade agent cleanup &&" in script, "sleeps only after a successful cleanup"
    assert script.rstrip().endswith("sleep infinity"), "stays up so the DaemonSet does not rerun it"
    assert spec["hostNetwork"] is True
    assert spec["tolerations"] == [{"operator": "Exists"}]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert ctr["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    host_mounts = {vm["mountPath"]: volumes[vm["name"]]["hostPath"]["path"] for vm in ctr["volumeMounts"]
                   if "hostPath" in volumes[vm["name"]]}
    assert host_mounts["/run/xtables.lock"] == "/run/xtables.lock"
    # `agent cleanup` also removes the saved state, from its --state-dir
    # (default /var/lib/stockade, as the agent DaemonSet uses).
    words = script.split()
    state_dir = words[words.index("--state-dir") + 1] if "--state-dir" in words else "/var/lib/stockade"
    assert host_mounts.get(state_dir) == "/var/lib/stockade"
    # Ready means "this node is clean": the probe checks what the script writes last.
    probe = ctr["readinessProbe"]["exec"]["command"]
    marker = probe[-1]
    assert f"touch {marker}" in script
