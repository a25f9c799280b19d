"""Render the deploy/ kustomizations and judge the rendered objects.

The judging functions are pure (objects in, list of problems out) so that
the tests can run each one twice: on the real manifests, where it must find
nothing, and on deliberately broken copies, where it must find exactly the
planted problem.  That second half is what keeps these checks honest.

Rendering needs ``kubectl`` (its built-in kustomize); nothing here talks to
a cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# Every kustomization a user applies, by the name the tests use for it.
TARGETS: dict[str, Path] = {
    "aks-kubenet": DEPLOY / "overlays" / "aks-kubenet",
    "routed": DEPLOY / "overlays" / "routed",
    "cleanup": DEPLOY / "cleanup",
}
INSTALLS = ("aks-kubenet", "routed")  # the targets that install Stockade

NAMESPACE = "stockade-system"
CONTROLLER = "stockade-controller"
AGENT = "stockade-agent"

# What the controller may do, exactly: (scope, apiGroup, resource, verb,
# resourceName); scope "*" is cluster-wide (a ClusterRoleBinding), otherwise
# the namespace of a RoleBinding; resourceName "*" is any name.
Grant = tuple[str, str, str, str, str]
CONTROLLER_GRANTS: frozenset[Grant] = frozenset(
    {("*", group, resource, verb, "*")
     for group, resources in (("", ("pods", "namespaces", "nodes")), ("networking.k8s.io", ("networkpolicies",)))
     for resource in resources
     for verb in ("get", "list", "watch")}
    # the agents' tokens are checked with TokenReview
    | {("*", "authentication.k8s.io", "tokenreviews", "create", "*")}
    # the channel's CA: Secret and ConfigMap stockade-ca in its own namespace;
    # create cannot be narrowed by name
    | {(NAMESPACE, "", resource, "get", "stockade-ca") for resource in ("secrets", "configmaps")}
    | {(NAMESPACE, "", "configmaps", "update", "stockade-ca")}
    | {(NAMESPACE, "", resource, "create", "*") for resource in ("secrets", "configmaps")}
)
# The only ServiceAccount token an agent pod may carry: its proof of identity
# for the controller, useless against the API server (audience), short-lived.
AGENT_TOKEN_AUDIENCE = "stockade"
AGENT_TOKEN_MAX_SECONDS = 3600


def kubectl() -> str | None:
    return shutil.which("kubectl")


def kustomize_yaml(path: Path) -> str:
    """``kubectl kustomize PATH``, offline: no kubeconfig is even readable."""
    exe = kubectl()
    if exe is None:
        raise FileNotFoundError("kubectl is not installed")
    env = {**os.environ, "KUBECONFIG": "/nonexistent/kubeconfig"}
    done = subprocess.run([exe, "kustomize", str(path)], capture_output=True, text=True, env=env, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{done.stderr}")
    return done.stdout


def parse(text: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def ident(obj: Obj) -> str:
    ns = obj["metadata"].get("namespace")
    return f"{obj['kind']}/{ns + '/' if ns else ''}{obj['metadata']['name']}"


def of_kind(objs: Iterable[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: Iterable[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


# -- workloads ---------------------------------------------------------------

WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job", "CronJob", "Pod")


def pod_spec(obj: Obj) -> Obj:
    if obj["kind"] == "Pod":
        return obj["spec"]  # type: ignore[no-any-return]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def workloads(objs: Iterable[Obj]) -> Iterator[Obj]:
    return (o for o in objs if o["kind"] in WORKLOAD_KINDS)


def service_account_of(obj: Obj) -> tuple[str, str]:
    """(namespace, name) of the ServiceAccount a workload's pods run as."""
    return obj["metadata"].get("namespace", "default"), pod_spec(obj).get("serviceAccountName", "default")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in command/args (``$$`` escapes)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, value)


def container_env(objs: list[Obj], container: Obj) -> dict[str, str]:
    """A container's environment as the kubelet builds it: envFrom, then env.

    Downward-API values become ``<fieldPath>`` placeholders.
    """
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref is not None, f"unexpected envFrom source {source}"
        env.update(one(objs, "ConfigMap", ref["name"])["data"])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            field = var["valueFrom"]["fieldRef"]["fieldPath"]
            env[var["name"]] = f"<{field}>"
    return env


def command_line(objs: list[Obj], container: Obj) -> list[str]:
    env = container_env(objs, container)
    return [expand(a, env) for a in [*container.get("command", []), *container.get("args", [])]]


# -- RBAC --------------------------------------------------------------------


def _binding_grants_to(binding: Obj, sa_ns: str, sa_name: str) -> bool:
    binding_ns = binding["metadata"].get("namespace")
    for subject in binding.get("subjects") or []:
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "ServiceAccount" and name == sa_name and subject.get("namespace", binding_ns) == sa_ns:
            return True
        if kind == "User" and name == f"system:serviceaccount:{sa_ns}:{sa_name}":
            return True
        if kind == "Group" and name in ("system:serviceaccounts", f"system:serviceaccounts:{sa_ns}",
                                        "system:authenticated"):
            return True
    return False


def bindings_for(objs: list[Obj], sa_ns: str, sa_name: str) -> list[Obj]:
    return [b for b in objs if b["kind"] in ("RoleBinding", "ClusterRoleBinding") and
            _binding_grants_to(b, sa_ns, sa_name)]


def grants_of(objs: list[Obj], sa_ns: str, sa_name: str) -> tuple[set[Grant], list[str]]:
    """Everything a ServiceAccount may do by the shipped bindings, expanded to
    (scope, apiGroup, resource, verb, resourceName), and the problems that
    make that set unknowable or wider than it looks (roles not shipped here,
    aggregation, non-resource URLs, resourceNames on verbs that ignore them)."""
    grants: set[Grant] = set()
    problems: list[str] = []
    for binding in bindings_for(objs, sa_ns, sa_name):
        ref = binding["roleRef"]
        roles = [r for r in objs if r["kind"] == ref["kind"] and r["metadata"]["name"] == ref["name"]
                 and (ref["kind"] == "ClusterRole" or r["metadata"].get("namespace") ==
                      binding["metadata"].get("namespace"))]
        if not roles:
            problems.append(f"{ident(binding)} refers to {ref['kind']}/{ref['name']}, which is not shipped here")
            continue
        role = roles[0]
        scope = "*" if binding["kind"] == "ClusterRoleBinding" else binding["metadata"].get("namespace", "default")
        if role.get("aggregationRule"):
            problems.append(f"{ident(role)} aggregates other roles")
        for rule in role.get("rules") or []:
            if rule.get("nonResourceURLs"):
                problems.append(f"{ident(role)} grants non-resource URLs {rule['nonResourceURLs']}")
            names = rule.get("resourceNames") or ["*"]
            if rule.get("resourceNames") and set(rule.get("verbs") or []) & {"create", "list", "watch",
                                                                              "deletecollection", "*"}:
                problems.append(f"{ident(role)} narrows create/list/watch by resourceNames, which the API "
                                f"ignores or refuses: {rule['verbs']} on {rule['resourceNames']}")
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    for verb in rule.get("verbs") or []:
                        for name in names:
                            grants.add((scope, group, resource, verb, name))
    return grants, problems


def agent_token_problems(w: Obj) -> list[str]:
    """A workload's projected ServiceAccount tokens: only the agent may have
    one, exactly one, for audience ``stockade``, expiring within the hour."""
    found = [(vol["name"], s["serviceAccountToken"]) for vol in pod_spec(w).get("volumes") or []
             for s in vol.get("projected", {}).get("sources") or [] if "serviceAccountToken" in s]
    if not found:
        return []
    if not (w["kind"] == "DaemonSet" and w["metadata"]["name"] == AGENT):
        return [f"{ident(w)} projects a ServiceAccount token in volume {name}" for name, _ in found]
    problems = []
    if len(found) > 1:
        problems.append(f"{ident(w)} projects {len(found)} ServiceAccount tokens; the agent needs one")
    for name, tok in found:
        if tok.get("audience") != AGENT_TOKEN_AUDIENCE:
            problems.append(f"{ident(w)} projects a ServiceAccount token in volume {name} for audience "
                            f"{tok.get('audience', '(the API server)')!r}, not {AGENT_TOKEN_AUDIENCE!r}: "
                            f"it would be usable against the API server")
        if int(tok.get("expirationSeconds", 3600)) > AGENT_TOKEN_MAX_SECONDS:
            problems.append(f"{ident(w)} projects a ServiceAccount token in volume {name} valid "
                            f"{tok['expirationSeconds']}s, longer than {AGENT_TOKEN_MAX_SECONDS}s")
    return problems


def rbac_problems(objs: list[Obj]) -> list[str]:
    """Why the shipped RBAC is wrong, or [] if it is right.

    Right means: the controller's ServiceAccount may do exactly
    :data:`CONTROLLER_GRANTS`; every other workload (the agents, the
    cleanup) has no Kubernetes API access at all: no binding names its
    ServiceAccount (directly, as a user, or through a group) and its pods
    mount no API token.  The agent alone projects one token, for audience
    ``stockade`` (the controller's TokenReview), which the API server
    refuses for anything else (:func:`agent_token_problems`).
    """
    problems: list[str] = []
    for w in workloads(objs):
        sa_ns, sa_name = service_account_of(w)
        spec = pod_spec(w)
        if w["kind"] == "Deployment" and w["metadata"]["name"] == CONTROLLER:
            grants, why = grants_of(objs, sa_ns, sa_name)
            problems += why
            if extra := grants - CONTROLLER_GRANTS:
                problems.append(f"controller is granted more than it needs: {sorted(extra)}")
            if missing := CONTROLLER_GRANTS - grants:
                problems.append(f"controller lacks grants it needs: {sorted(missing)}")
            continue
        for b in bindings_for(objs, sa_ns, sa_name):
            problems.append(f"{ident(w)} runs as {sa_ns}/{sa_name}, which {ident(b)} grants API access")
        sa = [s for s in of_kind(objs, "ServiceAccount")
              if s["metadata"]["name"] == sa_name and s["metadata"].get("namespace") == sa_ns]
        if not sa:
            problems.append(f"{ident(w)} runs as ServiceAccount {sa_ns}/{sa_name}, which is not shipped here")
        pod_automount = spec.get("automountServiceAccountToken")
        sa_automount = sa[0].get("automountServiceAccountToken") if sa else None
        if pod_automount is not False and not (pod_automount is None and sa_automount is False):
            problems.append(f"{ident(w)} mounts a ServiceAccount token (automountServiceAccountToken is not false)")
        problems += agent_token_problems(w)
        for vol in spec.get("volumes") or []:
            if "secret" in vol:
                problems.append(f"{ident(w)} mounts secret {vol['secret'].get('secretName')}")
    return problems


# -- the agent's rollout -----------------------------------------------------


def surge_problems(objs: list[Obj]) -> list[str]:
    """A hostNetwork DaemonSet that surges must declare no ports: with
    hostNetwork every containerPort is a hostPort, so the surge pod could
    never be scheduled beside the old one and the rollout would hang."""
    problems = []
    for ds in of_kind(objs, "DaemonSet"):
        spec = pod_spec(ds)
        rolling = ds["spec"].get("updateStrategy", {}).get("rollingUpdate", {})
        if not spec.get("hostNetwork") or rolling.get("maxSurge") in (None, 0, "0", "0%"):
            continue
        for c in spec["containers"]:
            ports = [p for p in c.get("ports") or []]
            if ports:
                problems.append(f"{ident(ds)} surges with hostNetwork but container {c['name']} declares "
                                f"ports {[p['containerPort'] for p in ports]}")
    return problems
