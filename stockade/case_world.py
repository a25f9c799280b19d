"""A case's cluster as it evolves: Kubernetes objects, actions, stages.

What: :class:`World` turns the case and each step action into Kubernetes
object operations (:class:`ObjectOp`: kind, namespace, name, new object or
deletion), checking references (declared namespaces, existing pods and
policies, unique names) and expanding templates against the address plan;
:func:`stages` lays out a whole run up front, so every error surfaces
before anything runs; ``namespace_object``/``node_object``/``pod_object``
build the objects both runners create.

Why its own module: the two runners (``stockade evaluate`` and ``stockade
lab run``) only differ in what they do with each stage's operations and
probes; what those are is decided here, once.

What not: no Kubernetes or network I/O, no policy validation (that is
``controller.parse``; an invalid policy is a legitimate case input).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from stockade.case_addresses import AddressPlan, node_ip, node_name, pod_cidr
from stockade.case_errors import CaseError, _FieldError, _show
from stockade.case_fields import _known, _labels, _name, _obj, _pod, _str
from stockade.case_templates import substitute
from stockade.case_values import Action, Case, PodDecl, Probe

# --------------------------------------------------------------------------
# Kubernetes objects


def namespace_object(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}}


def node_object(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node_name(i), "labels": {"kubernetes.io/hostname": node_name(i)}},
        "spec": {"podCIDR": pod_cidr(i), "podCIDRs": [pod_cidr(i)]},
        "status": {"addresses": [{"type": "InternalIP", "address": node_ip(i)},
                                 {"type": "Hostname", "address": node_name(i)}]},
    }


def pod_object(pod: PodDecl, ip: str, node: int) -> dict[str, Any]:
    ports = []
    for p in pod.ports:
        e: dict[str, Any] = {"containerPort": p.port, "protocol": p.protocol}
        if p.name:
            e["name"] = p.name
        if pod.host_network:
            e["hostPort"] = p.port
        ports.append(e)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": dict(pod.labels)},
        "spec": {"nodeName": node_name(node), "hostNetwork": pod.host_network,
                 "containers": [{"name": "main", "image": "stockade/probe", "ports": ports}]},
        "status": {"phase": "Running", "hostIP": node_ip(node), "hostIPs": [{"ip": node_ip(node)}],
                   "podIP": ip, "podIPs": [{"ip": ip}]},
    }


@dataclass(frozen=True, slots=True)
class ObjectOp:
    """Create-or-replace (``obj`` set) or delete (``obj`` None) one object.
    ``namespace`` is "" for cluster-scoped kinds."""

    kind: str  # Namespace, Node, Pod, NetworkPolicy
    namespace: str
    name: str
    obj: dict[str, Any] | None

    @property
    def is_delete(self) -> bool:
        return self.obj is None


@dataclass(frozen=True, slots=True)
class Stage:
    """``step`` None: the initial cluster and top-level probes."""

    step: str | None
    ops: tuple[ObjectOp, ...]
    probes: tuple[Probe, ...]


class World:
    """The case's objects as they evolve through the steps (no I/O).
    ``namespaces``: name -> labels; ``pods``: key -> PodDecl;
    ``policies``: keys of the policies present."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.plan = AddressPlan(case.nodes, case.external)
        self.namespaces: dict[str, dict[str, str]] = {}
        self.pods: dict[str, PodDecl] = {}
        self.policies: set[str] = set()
        self._externals = {e.name for e in case.external}

    def initial_ops(self) -> list[ObjectOp]:
        ops = [ObjectOp("Node", "", node_name(i), node_object(i)) for i in range(self.case.nodes)]
        for name, labels in self.case.namespaces.items():
            self.namespaces[name] = labels
            ops.append(ObjectOp("Namespace", "", name, namespace_object(name, labels)))
        seen: set[str] = set()
        for i, p in enumerate(self.case.pods):
            if p.key in seen:
                raise _FieldError(f"pods[{i}].name", f"duplicate pod {p.key}")
            seen.add(p.key)
        for i, p in enumerate(self.case.pods):
            ops.append(self._create_pod(p, f"pods[{i}]"))
        if len(self._externals) != len(self.case.external):
            raise _FieldError("external", "external host names must be unique")
        for i, pol in enumerate(self.case.policies):
            ops.append(self._policy(pol, f"policies[{i}]"))
        return ops

    def check_probe(self, probe: Probe) -> None:
        for ref, f in ((probe.src, "from"), (probe.dst, "to")):
            if ref.startswith("external:"):
                if ref[len("external:"):] not in self._externals:
                    raise _FieldError(f"{probe.field}.{f}", f"no external host {_show(ref[9:])}")
            elif ref not in self.pods:
                raise _FieldError(f"{probe.field}.{f}", f"no pod {_show(ref)} at this point")

    def _create_pod(self, p: PodDecl, f: str) -> ObjectOp:
        if p.namespace not in self.namespaces:
            raise _FieldError(f"{f}.namespace", f"namespace {_show(p.namespace)} is not declared")
        if p.key in self.pods:
            raise _FieldError(f"{f}.name", f"pod {p.key} already exists")
        if p.node is not None and p.node >= self.case.nodes:
            raise _FieldError(f"{f}.node", f"{p.node} is not a node index below {self.case.nodes}")
        try:
            ip = self.plan.add_pod(p)
        except ValueError as e:
            raise _FieldError(f, str(e)) from None
        self.pods[p.key] = p
        return ObjectOp("Pod", p.namespace, p.name, pod_object(p, ip, self.plan.pod_nodes[p.key]))

    def _policy(self, raw: Any, f: str) -> ObjectOp:
        obj = substitute(copy.deepcopy(raw), self.plan.lookup, f)
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if isinstance(meta, dict):
            if not meta.get("namespace"):
                meta["namespace"] = "default"
            ns, name = meta.get("namespace"), meta.get("name")
        else:
            ns, name = "default", None
        name = name if isinstance(name, str) and name else "<unnamed>"
        ns = ns if isinstance(ns, str) else "default"
        if ns not in self.namespaces:
            raise _FieldError(f"{f}.metadata.namespace", f"namespace {_show(ns)} is not declared")
        self.policies.add(f"{ns}/{name}")
        return ObjectOp("NetworkPolicy", ns, name, obj)

    def apply_action(self, action: Action) -> list[ObjectOp]:
        """The object operations ``action`` stands for; updates the world.
        Templates anywhere in the action are expanded first."""
        f = action.field
        b = substitute(copy.deepcopy(action.body), self.plan.lookup, f)
        if action.kind == "apply":
            d = _obj(b, f, required=True)
            if d.get("kind") == "Namespace":
                meta = _obj(d.get("metadata"), f"{f}.metadata", required=True)
                name = _name(meta.get("name"), f"{f}.metadata.name", True)
                labels = _labels(meta.get("labels"), f"{f}.metadata.labels")
                self.namespaces[name] = labels
                return [ObjectOp("Namespace", "", name, namespace_object(name, labels))]
            if d.get("kind") != "NetworkPolicy":
                raise _FieldError(f"{f}.kind", f"apply takes a NetworkPolicy or a Namespace, not {_show(d.get('kind'))}")
            return [self._policy(d, f)]
        if action.kind == "delete":
            d = _obj(b, f, required=True)
            _known(d, f, ("kind", "namespace", "name"))
            kind, name = d.get("kind"), _str(d.get("name"), f"{f}.name")
            if kind == "NetworkPolicy":
                ns = _str(d.get("namespace"), f"{f}.namespace", required=False) or "default"
                if f"{ns}/{name}" not in self.policies:
                    raise _FieldError(f, f"no NetworkPolicy {ns}/{name} to delete")
                self.policies.discard(f"{ns}/{name}")
                return [ObjectOp("NetworkPolicy", ns, name, None)]
            if kind == "Namespace":
                if name not in self.namespaces:
                    raise _FieldError(f, f"no Namespace {name} to delete")
                if any(p.namespace == name for p in self.pods.values()):
                    raise _FieldError(f, f"namespace {name} still has pods; delete them first")
                del self.namespaces[name]
                gone = sorted(k for k in self.policies if k.split("/", 1)[0] == name)
                self.policies -= set(gone)
                return [ObjectOp("NetworkPolicy", name, k.split("/", 1)[1], None) for k in gone] + \
                    [ObjectOp("Namespace", "", name, None)]
            raise _FieldError(f"{f}.kind", f"delete takes NetworkPolicy or Namespace, not {_show(kind)}")
        if action.kind == "label-pod":
            d = _obj(b, f, required=True)
            _known(d, f, ("pod", "labels"))
            key = _str(d.get("pod"), f"{f}.pod")
            old = self.pods.get(key)
            if old is None:
                raise _FieldError(f"{f}.pod", f"no pod {_show(key)} at this point")
            new = PodDecl(old.namespace, old.name, _labels(d.get("labels"), f"{f}.labels"), old.ports,
                          old.node, old.host_network)
            self.pods[key] = new
            return [ObjectOp("Pod", new.namespace, new.name,
                             pod_object(new, self.plan.pod_ips[key], self.plan.pod_nodes[key]))]
        if action.kind == "label-namespace":
            d = _obj(b, f, required=True)
            _known(d, f, ("namespace", "labels"))
            name = _str(d.get("namespace"), f"{f}.namespace")
            if name not in self.namespaces:
                raise _FieldError(f"{f}.namespace", f"no namespace {_show(name)} at this point")
            labels = _labels(d.get("labels"), f"{f}.labels")
            self.namespaces[name] = labels
            return [ObjectOp("Namespace", "", name, namespace_object(name, labels))]
        if action.kind == "create-pod":
            return [self._create_pod(_pod(b, f, self.case.nodes), f)]
        if action.kind == "delete-pod":
            key = _str(b, f)
            old = self.pods.pop(key, None)
            if old is None:
                raise _FieldError(f, f"no pod {_show(key)} at this point")
            self.plan.remove_pod(key)
            return [ObjectOp("Pod", old.namespace, old.name, None)]
        raise _FieldError(f, f"unknown action {_show(action.kind)}")  # parse_case prevents this


def stages(case: Case) -> list[Stage]:
    """The whole run: initial objects and probes, then each step's
    operations and probes; raises ValueError subclasses naming the field."""
    w = World(case)
    out = [Stage(None, tuple(w.initial_ops()), case.probes)]
    for p in case.probes:
        w.check_probe(p)
    for step in case.steps:
        ops: list[ObjectOp] = []
        for a in step.actions:
            ops.extend(w.apply_action(a))
        for p in step.probes:
            w.check_probe(p)
        out.append(Stage(step.name, tuple(ops), step.probes))
    return out


def case_stages(case: Case) -> list[Stage]:
    """:func:`stages`, with errors as :class:`CaseError`."""
    try:
        return stages(case)
    except _FieldError as e:
        raise CaseError(case.file, e.field, e.message) from None
