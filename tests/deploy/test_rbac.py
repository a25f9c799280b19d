"""The controller may read exactly what it watches, review tokens and keep
its CA objects; agents (and the cleanup) may do nothing at all with the
Kubernetes API (the agent's one projected token is for the controller only).

Each check runs on the shipped manifests (no problem allowed) and on copies
with one planted problem (that problem must be reported)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from tests.deploy import manifests as m
from tests.deploy.manifests import Obj


@pytest.mark.parametrize("target", list(m.TARGETS))
def test_shipped_rbac_is_exact(rendered: dict[str, list[Obj]], target: str) -> None:
    assert m.rbac_problems(rendered[target]) == []


@pytest.mark.parametrize("overlay", m.INSTALLS)
def test_agent_has_no_binding_and_no_api_token(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    ds = m.one(objs, "DaemonSet", m.AGENT)
    assert m.service_account_of(ds) == (m.NAMESPACE, m.AGENT)
    assert m.bindings_for(objs, m.NAMESPACE, m.AGENT) == []
    assert m.pod_spec(ds)["automountServiceAccountToken"] is False
    assert m.one(objs, "ServiceAccount", m.AGENT)["automountServiceAccountToken"] is False
    # its one token: audience stockade, an hour at most, mounted where --token-file points
    (tok,) = [(v["name"], src["serviceAccountToken"]) for v in m.pod_spec(ds)["volumes"]
              for src in v.get("projected", {}).get("sources", []) if "serviceAccountToken" in src]
    assert tok[1] == {"audience": "stockade", "expirationSeconds": 3600, "path": "token"}
    (ctr,) = m.pod_spec(ds)["containers"]
    mounts = {vm["name"]: vm for vm in ctr["volumeMounts"]}
    assert mounts[tok[0]]["mountPath"] == "/var/run/secrets/stockade" and mounts[tok[0]]["readOnly"] is True
    args = ctr["args"]
    assert args[args.index("--token-file") + 1] == "/var/run/secrets/stockade/token"
    # and the CA bundle the controller publishes, where --ca-file points
    (ca,) = [v for v in m.pod_spec(ds)["volumes"] if v.get("configMap", {}).get("name") == "stockade-ca"]
    assert mounts[ca["name"]]["mountPath"] == "/etc/stockade/ca"
    assert args[args.index("--ca-file") + 1] == "/etc/stockade/ca/ca.crt"


def _agent_binding(kind: str, subject: Obj, role: str = "view") -> Obj:
    meta: Obj = {"name": "planted"}
    if kind == "RoleBinding":
        meta["namespace"] = m.NAMESPACE
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [subject]}


def _add(obj: Obj) -> Callable[[list[Obj]], None]:
    return lambda objs: objs.append(obj)


def _agent_pod(objs: list[Obj]) -> Obj:
    return m.pod_spec(m.one(objs, "DaemonSet", m.AGENT))


def _controller_rules(objs: list[Obj]) -> list[Obj]:
    return m.one(objs, "ClusterRole", m.CONTROLLER)["rules"]  # type: ignore[no-any-return]


def _automount_on(objs: list[Obj]) -> None:
    _agent_pod(objs)["automountServiceAccountToken"] = True


def _automount_unset_everywhere(objs: list[Obj]) -> None:
    del _agent_pod(objs)["automountServiceAccountToken"]
    del m.one(objs, "ServiceAccount", m.AGENT)["automountServiceAccountToken"]


def _projected_token(objs: list[Obj]) -> None:
    _agent_pod(objs)["volumes"].append(
        {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}})


def _agent_token(objs: list[Obj]) -> Obj:
    return next(src["serviceAccountToken"] for v in _agent_pod(objs)["volumes"]
                for src in v.get("projected", {}).get("sources", []) if "serviceAccountToken" in src)


def _agent_token_api_audience(objs: list[Obj]) -> None:
    _agent_token(objs)["audience"] = "https://kubernetes.default.svc.cluster.local"


def _agent_token_default_audience(objs: list[Obj]) -> None:
    del _agent_token(objs)["audience"]


def _agent_token_long_lived(objs: list[Obj]) -> None:
    _agent_token(objs)["expirationSeconds"] = 86400


def _role_rules(objs: list[Obj]) -> list[Obj]:
    return m.one(objs, "Role", m.CONTROLLER)["rules"]  # type: ignore[no-any-return]


def _role_updates_any_configmap(objs: list[Obj]) -> None:
    _role_rules(objs)[1].pop("resourceNames")


def _role_updates_the_ca_secret(objs: list[Obj]) -> None:
    _role_rules(objs)[1]["resources"].append("secrets")


def _role_create_by_name(objs: list[Obj]) -> None:
    _role_rules(objs)[2]["resourceNames"] = ["stockade-ca"]


def _role_bound_cluster_wide(objs: list[Obj]) -> None:
    role = m.one(objs, "Role", m.CONTROLLER)
    role["kind"] = "ClusterRole"
    role["metadata"].pop("namespace", None)
    rb = m.one(objs, "RoleBinding", m.CONTROLLER)
    rb["kind"] = "ClusterRoleBinding"
    rb["roleRef"]["kind"] = "ClusterRole"
    rb["metadata"]["name"] = "stockade-controller-ca"
    role["metadata"]["name"] = rb["roleRef"]["name"] = "stockade-controller-ca"
    rb["metadata"].pop("namespace", None)


def _controller_cannot_review_tokens(objs: list[Obj]) -> None:
    _controller_rules(objs).pop()


def _controller_cannot_publish_the_bundle(objs: list[Obj]) -> None:
    _role_rules(objs).pop(1)


def _controller_writes(objs: list[Obj]) -> None:
    _controller_rules(objs)[0]["verbs"].append("patch")


def _controller_reads_secrets(objs: list[Obj]) -> None:
    _controller_rules(objs)[0]["resources"].append("secrets")


def _controller_wildcard(objs: list[Obj]) -> None:
    _controller_rules(objs)[1]["resources"] = ["*"]


def _controller_cannot_watch_nodes(objs: list[Obj]) -> None:
    rules = _controller_rules(objs)
    rules[0]["resources"].remove("nodes")
    rules.append({"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]})


def _controller_bound_to_view(objs: list[Obj]) -> None:
    objs.append(_agent_binding("ClusterRoleBinding", {"kind": "ServiceAccount", "name": m.CONTROLLER,
                                                       "namespace": m.NAMESPACE}))


PLANTED = [
    pytest.param(_add(_agent_binding("ClusterRoleBinding", {"kind": "ServiceAccount", "name": m.AGENT,
                                                            "namespace": m.NAMESPACE})),
                 "grants API access", id="agent-clusterrolebinding"),
    pytest.param(_add(_agent_binding("RoleBinding", {"kind": "ServiceAccount", "name": m.AGENT})),
                 "grants API access", id="agent-rolebinding-implicit-namespace"),
    pytest.param(_add(_agent_binding("RoleBinding", {"kind": "User",
                                                     "name": f"system:serviceaccount:{m.NAMESPACE}:{m.AGENT}"})),
                 "grants API access", id="agent-as-user"),
    pytest.param(_add(_agent_binding("ClusterRoleBinding", {"kind": "Group",
                                                            "name": f"system:serviceaccounts:{m.NAMESPACE}"})),
                 "grants API access", id="agent-via-namespace-group"),
    pytest.param(_automount_on, "mounts a ServiceAccount token", id="pod-automount-true"),
    pytest.param(_automount_unset_everywhere, "mounts a ServiceAccount token", id="automount-default"),
    pytest.param(_projected_token, "projects a ServiceAccount token", id="projected-token"),
    pytest.param(_agent_token_api_audience, "usable against the API server", id="agent-token-api-audience"),
    pytest.param(_agent_token_default_audience, "usable against the API server", id="agent-token-no-audience"),
    pytest.param(_agent_token_long_lived, "longer than 3600s", id="agent-token-a-day"),
    pytest.param(_controller_writes, "more than it needs", id="controller-patch"),
    pytest.param(_controller_reads_secrets, "more than it needs", id="controller-secrets"),
    pytest.param(_controller_wildcard, "more than it needs", id="controller-wildcard"),
    pytest.param(_role_updates_any_configmap, "more than it needs", id="role-update-any-configmap"),
    pytest.param(_role_updates_the_ca_secret, "more than it needs", id="role-update-ca-secret"),
    pytest.param(_role_create_by_name, "narrows create", id="role-create-by-name"),
    pytest.param(_role_bound_cluster_wide, "more than it needs", id="ca-role-cluster-wide"),
    pytest.param(_controller_cannot_review_tokens, "lacks grants", id="controller-no-tokenreviews"),
    pytest.param(_controller_cannot_publish_the_bundle, "lacks grants", id="controller-no-bundle-update"),
    pytest.param(_controller_cannot_watch_nodes, "lacks grants", id="controller-no-watch-nodes"),
    pytest.param(_controller_bound_to_view, "not shipped here", id="controller-bound-to-builtin-role"),
]


@pytest.mark.parametrize(("plant", "expected"), PLANTED)
def test_planted_rbac_problem_is_reported(rendered: dict[str, list[Obj]], plant: Callable[[list[Obj]], None],
                                          expected: str) -> None:
    objs = copy.deepcopy(rendered["aks-kubenet"])
    plant(objs)
    problems = m.rbac_problems(objs)
    assert problems, "the planted problem went unnoticed"
    assert any(expected in p for p in problems), problems
