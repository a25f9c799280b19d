"""The resource types the emulator serves: names, kinds, scope, verbs.

A :class:`ResourceType` is what discovery advertises and what the store keys
objects by.  :data:`BUILTIN` lists the kinds Stockade and its deploy
manifests use; any other ``group/version/resource`` becomes a *generic* type
the first time an object of it is created (scope taken from the URL, kind
from the body), and from then on it is listed in discovery like the rest.

Not here: storage, schemas or validation.  The emulator stores objects as
given; only the metadata the apiserver owns is filled in (by ``store``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

VERBS_ALL = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
VERBS_STATUS = ("get", "patch", "update")


@dataclass(frozen=True)
class ResourceType:
    """One served resource, e.g. ``pods`` in the core group ``v1``."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    has_status: bool = False  # a /status subresource exists and the main resource ignores status
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = VERBS_ALL  # what discovery advertises (TokenReview: create only)
    stored: bool = True  # False: a virtual resource answered by a handler, never stored (TokenReview)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """Store key: objects are shared across versions of a group, as in etcd."""
        return (self.group, self.plural)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def qualified(self) -> str:
        """kubectl's ``plural.group`` spelling."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _rt(gv: str, plural: str, kind: str, namespaced: bool, short: tuple[str, ...] = (), status: bool = False,
        all_: bool = False) -> ResourceType:
    group, _, version = gv.rpartition("/")
    return ResourceType(group, version, plural, kind, namespaced, short, status, ("all",) if all_ else ())


BUILTIN: tuple[ResourceType, ...] = (
    _rt("v1", "namespaces", "Namespace", False, ("ns",), status=True),
    _rt("v1", "pods", "Pod", True, ("po",), status=True, all_=True),
    _rt("v1", "nodes", "Node", False, ("no",), status=True),
    _rt("v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    _rt("v1", "configmaps", "ConfigMap", True, ("cm",)),
    _rt("v1", "secrets", "Secret", True),
    _rt("v1", "services", "Service", True, ("svc",), status=True, all_=True),
    _rt("v1", "endpoints", "Endpoints", True, ("ep",)),
    _rt("v1", "events", "Event", True, ("ev",)),
    _rt("v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), status=True),
    _rt("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", True, ("netpol",)),
    _rt("apps/v1", "deployments", "Deployment", True, ("deploy",), status=True, all_=True),
    _rt("apps/v1", "daemonsets", "DaemonSet", True, ("ds",), status=True, all_=True),
    _rt("apps/v1", "statefulsets", "StatefulSet", True, ("sts",), status=True, all_=True),
    _rt("apps/v1", "replicasets", "ReplicaSet", True, ("rs",), status=True, all_=True),
    _rt("batch/v1", "jobs", "Job", True, (), status=True, all_=True),
    _rt("batch/v1", "cronjobs", "CronJob", True, ("cj",), status=True, all_=True),
    _rt("rbac.authorization.k8s.io/v1", "roles", "Role", True),
    _rt("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding", True),
    _rt("rbac.authorization.k8s.io/v1", "clusterroles", "ClusterRole", False),
    _rt("rbac.authorization.k8s.io/v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _rt("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), status=True),
    _rt("scheduling.k8s.io/v1", "priorityclasses", "PriorityClass", False, ("pc",)),
    _rt("coordination.k8s.io/v1", "leases", "Lease", True),
    _rt("discovery.k8s.io/v1", "endpointslices", "EndpointSlice", True),
    _rt("events.k8s.io/v1", "events", "Event", True, ("ev",)),
    # Create-only and never stored: the server answers with the review (see ``tokens``).
    ResourceType("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, verbs=("create",),
                 stored=False),
)


@dataclass
class Registry:
    """Known resource types by (group, version, plural); grows with generic kinds.

    ``types`` maps (group, version, plural) to the type; insertion order is
    discovery order.
    """

    types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)

    @classmethod
    def builtin(cls) -> Registry:
        reg = cls()
        for rt in BUILTIN:
            reg.add(rt)
        return reg

    def add(self, rt: ResourceType) -> ResourceType:
        return self.types.setdefault((rt.group, rt.version, rt.plural), rt)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.types.get((group, version, plural))

    def resolve(self, name: str) -> ResourceType:
        """Find a type by kubectl-style name: ``pods``, ``networkpolicies.networking.k8s.io``, ``Pod``, ``po``."""
        plural, _, group = name.partition(".")
        for rt in self.types.values():
            if group and rt.group != group:
                continue
            if plural in (rt.plural, rt.kind, rt.singular) or plural in rt.short_names:
                return rt
        raise KeyError(f"unknown resource type {name!r}")

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> versions served, core group under ""."""
        out: dict[str, list[str]] = {}
        for rt in self.types.values():
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self.types.values() if rt.group == group and rt.version == version]

    def namespaced(self) -> list[ResourceType]:
        """One namespaced type per store key (namespace deletion walks these)."""
        seen: dict[tuple[str, str], ResourceType] = {}
        for rt in self.types.values():
            if rt.namespaced:
                seen.setdefault(rt.key, rt)
        return list(seen.values())
