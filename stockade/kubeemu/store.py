"""The versioned object store: etcd plus the apiserver's registry rules, pure.

One global ``resourceVersion`` counter (like etcd's revision) is bumped by
every write; each write appends an :class:`Event` to a bounded history
window of the last ``history`` writes, across all kinds (like etcd
compaction).  A watch may resume from any version whose following events
are all still in the window; older ones get the apiserver's 410 "too old
resource version: R (F)" where F is the newest version already dropped.
An exact list at a version inside the window is rebuilt by undoing the
newer events.

The registry rules the real apiserver applies and Stockade relies on live
here too: uid, creationTimestamp, generation (bumped on non-metadata,
non-status change), namespace defaulting and checks, the namespace label
``kubernetes.io/metadata.name``, status only via ``/status`` for kinds that
have that subresource (pods keep the status given at create, so tests can
set IPs and phases), no-op updates that do not bump the version, and
namespace deletion that deletes its namespaced objects first.

Listeners (plain callables) are told of every event synchronously after
the write; the server shell uses them to feed watch streams.

Not here: I/O, asyncio, HTTP, wall-clock reads (the clock is injected),
graceful deletion (deletes are immediate), admission or schema validation.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from stockade.kubeemu import errors
from stockade.kubeemu.errors import JSON
from stockade.kubeemu.resources import Registry, ResourceType
from stockade.kubeemu.selectors import Matcher

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})  # the apiserver refuses to delete these
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class Event:
    """One committed write: the object after it (for DELETED, its last state) and before it."""

    rv: int
    type: EventType
    key: tuple[str, str]  # (group, plural)
    namespace: str  # "" for cluster-scoped objects
    name: str
    obj: JSON
    prev: JSON | None


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _meta(obj: JSON) -> JSON:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        obj["metadata"] = meta
    return meta


def _content(obj: JSON) -> JSON:
    """What generation tracks: everything but metadata, status and type."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def parse_rv(text: str | None) -> int | None:
    """A resourceVersion query value as an int; None for absent or empty."""
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise errors.bad_request(f"invalid resource version {text!r}: must be a decimal integer") from None
    if value < 0:
        raise errors.bad_request(f"invalid resource version {text!r}: must not be negative")
    return value


class Store:
    """All objects of all kinds, the history window and the version counter."""

    def __init__(
        self,
        registry: Registry | None = None,
        history: int = 1000,
        clock: Callable[[], datetime] = _utcnow,
        rng: random.Random | None = None,
        initial_namespaces: Iterable[str] = INITIAL_NAMESPACES,
    ) -> None:
        if history < 1:
            raise ValueError("history must be at least 1")
        self.registry = registry or Registry.builtin()
        self.clock = clock
        self.rng = rng or random.Random()
        # (group, plural) -> (namespace, name) -> stored object
        self._objects: dict[tuple[str, str], dict[tuple[str, str], JSON]] = {}
        self._history: deque[Event] = deque(maxlen=history)
        self._rv = 0
        self._floor = 0  # newest version no longer in the window (watches from below it expire)
        self.listeners: list[Callable[[Event], None]] = []
        ns_type = self.registry.resolve("namespaces")
        for name in initial_namespaces:
            self.create(ns_type, {"metadata": {"name": name}})

    # ---- versions -----------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def floor(self) -> int:
        return self._floor

    def events_since(self, rv: int) -> list[Event]:
        """Every event newer than ``rv``; 410 Expired if some were dropped."""
        if rv < self._floor:
            raise errors.expired_watch(rv, self._floor)
        return [event for event in self._history if event.rv > rv]

    def compact(self) -> None:
        """Drop the whole history window (a fault for tests: every older version expires)."""
        self._floor = self._rv
        self._history.clear()

    # ---- reads ----------------------------------------------------------------

    def type_of(self, resource: ResourceType | str) -> ResourceType:
        return resource if isinstance(resource, ResourceType) else self.registry.resolve(resource)

    def get(self, resource: ResourceType | str, name: str, namespace: str = "") -> JSON:
        rt = self.type_of(resource)
        obj = self._objects.get(rt.key, {}).get((namespace if rt.namespaced else "", name))
        if obj is None:
            raise errors.not_found(rt.group, rt.plural, name)
        return self._view(rt, obj)

    def list(
        self,
        resource: ResourceType | str,
        namespace: str | None = None,
        match: Matcher | None = None,
        rv: int | None = None,
        exact: bool = False,
    ) -> tuple[list[JSON], int]:
        """Objects (sorted by namespace, name) and the list's resourceVersion.

        ``exact`` rebuilds the state at ``rv`` from the window (410 if too
        old); otherwise any state not older than ``rv`` will do: the current.
        """
        rt = self.type_of(resource)
        if rv is not None and rv > self._rv:
            raise errors.too_large_resource_version(rv, self._rv)
        objects = dict(self._objects.get(rt.key, {}))
        list_rv = self._rv
        if exact and rv is not None:
            if rv < self._floor:
                raise errors.expired_list()
            for event in reversed(self._history):
                if event.rv <= rv:
                    break
                if event.key != rt.key:
                    continue
                ident = (event.namespace, event.name)
                if event.prev is None:
                    objects.pop(ident, None)
                else:
                    objects[ident] = event.prev
            list_rv = rv
        items = [
            self._view(rt, obj)
            for (ns, _), obj in sorted(objects.items())
            if (namespace is None or ns == namespace) and (match is None or match(obj))
        ]
        return items, list_rv

    # ---- writes ---------------------------------------------------------------

    def create(self, resource: ResourceType | str, obj: JSON, namespace: str = "", dry_run: bool = False) -> JSON:
        """Store a new object (POST).  ``namespace`` is the URL's; the body's must agree."""
        rt = self.type_of(resource)
        new = copy.deepcopy(obj)
        self._check_type(rt, new)
        meta = _meta(new)
        ns = self._namespace_for(rt, meta, namespace)
        name = meta.get("name") or ""
        if not name:
            prefix = meta.get("generateName") or ""
            if not prefix:
                raise errors.invalid(rt.group, rt.plural, rt.kind, "", "metadata.name",
                                     "name or generateName is required")
            while True:
                name = prefix + "".join(self.rng.choice(_SUFFIX_ALPHABET) for _ in range(5))
                if (ns, name) not in self._objects.get(rt.key, {}):
                    break
        if not isinstance(name, str):
            raise errors.bad_request("metadata.name must be a string")
        if rt.namespaced and ("", ns) not in self._objects.get(("", "namespaces"), {}):
            raise errors.not_found("", "namespaces", ns)
        if (ns, name) in self._objects.get(rt.key, {}):
            raise errors.already_exists(rt.group, rt.plural, name)
        meta["name"] = name
        if rt.namespaced:
            meta["namespace"] = ns
        meta["uid"] = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        meta["creationTimestamp"] = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        meta["generation"] = 1
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "selfLink"):
            meta.pop(field, None)
        self._defaults(rt, new, created=True)
        if dry_run:
            return self._view(rt, new)
        return self._commit(rt, "ADDED", ns, name, new, None)

    def put(self, resource: ResourceType | str, obj: JSON, namespace: str = "") -> JSON:
        """Create, or replace what is there regardless of its version (a helper for tests and the lab)."""
        rt = self.type_of(resource)
        meta = obj.get("metadata") or {}
        ns = (namespace or meta.get("namespace", "")) if rt.namespaced else ""
        if (ns, meta.get("name", "")) not in self._objects.get(rt.key, {}):
            return self.create(rt, obj, ns)
        unversioned = {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
        updated = self.update(rt, unversioned, ns)
        if rt.has_status and "status" in obj:
            updated = self.update(rt, {**updated, "status": obj["status"]}, ns, subresource="status")
        return updated

    def update(
        self,
        resource: ResourceType | str,
        obj: JSON,
        namespace: str = "",
        name: str | None = None,
        subresource: str = "",
        dry_run: bool = False,
    ) -> JSON:
        """Replace an object (PUT).  A stale metadata.resourceVersion is a 409 Conflict."""
        rt = self.type_of(resource)
        new = copy.deepcopy(obj)
        self._check_type(rt, new)
        meta = _meta(new)
        url_name = name if name is not None else meta.get("name", "")
        if meta.get("name", url_name) != url_name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({url_name})"
            )
        ns = self._namespace_for(rt, meta, namespace)
        old = self._objects.get(rt.key, {}).get((ns, url_name))
        if old is None:
            raise errors.not_found(rt.group, rt.plural, url_name)
        given_rv = meta.get("resourceVersion")
        if given_rv not in (None, "") and str(given_rv) != old["metadata"]["resourceVersion"]:
            raise errors.modified_conflict(rt.group, rt.plural, url_name)
        old_meta = old["metadata"]
        if subresource == "status":
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status", {})
            new = merged
        elif subresource:
            raise errors.resource_not_found()
        else:
            if rt.has_status:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            meta["name"] = url_name
            if rt.namespaced:
                meta["namespace"] = ns
            for field in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
                if field in old_meta:
                    meta[field] = old_meta[field]
                else:
                    meta.pop(field, None)
            self._defaults(rt, new, created=False)
            if _content(new) != _content(old):
                meta["generation"] = int(old_meta.get("generation", 0)) + 1
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        if new == old or dry_run:
            return self._view(rt, new)
        return self._commit(rt, "MODIFIED", ns, url_name, new, old)

    def patch(
        self,
        resource: ResourceType | str,
        name: str,
        patcher: Callable[[JSON], Any],
        namespace: str = "",
        subresource: str = "",
        dry_run: bool = False,
    ) -> JSON:
        """Apply ``patcher`` to the current object and store the result (PATCH)."""
        rt = self.type_of(resource)
        current = self.get(rt, name, namespace)
        patched = patcher(current)
        if not isinstance(patched, dict):
            raise errors.bad_request("the patched object is not a JSON object")
        meta = _meta(patched)
        if meta.get("name", name) != name:
            raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
        if meta.get("uid", current["metadata"]["uid"]) != current["metadata"]["uid"]:
            raise errors.conflict(rt.group, rt.plural, name, "the UID in the precondition does not match the UID in record")
        patched.setdefault("apiVersion", current.get("apiVersion"))
        patched.setdefault("kind", current.get("kind"))
        return self.update(rt, patched, namespace, name, subresource, dry_run)

    def delete(
        self,
        resource: ResourceType | str,
        name: str,
        namespace: str = "",
        preconditions: JSON | None = None,
        dry_run: bool = False,
    ) -> JSON:
        """Remove an object now; a namespace takes its namespaced objects with it."""
        rt = self.type_of(resource)
        ns = namespace if rt.namespaced else ""
        old = self._objects.get(rt.key, {}).get((ns, name))
        if old is None:
            raise errors.not_found(rt.group, rt.plural, name)
        pre = preconditions or {}
        if pre.get("uid") not in (None, "") and pre["uid"] != old["metadata"].get("uid"):
            raise errors.conflict(rt.group, rt.plural, name, f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {old['metadata'].get('uid')}")
        if pre.get("resourceVersion") not in (None, "") and str(pre["resourceVersion"]) != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.group, rt.plural, name, f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {old['metadata']['resourceVersion']}")
        if rt.key == ("", "namespaces") and name in IMMORTAL_NAMESPACES:
            raise errors.ApiError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                                  {"name": name, "kind": "namespaces"})
        if dry_run:
            return self._view(rt, old)
        if rt.key == ("", "namespaces"):
            for inner in self.registry.namespaced():
                for (obj_ns, obj_name) in sorted(self._objects.get(inner.key, {})):
                    if obj_ns == name:
                        self.delete(inner, obj_name, obj_ns)
        gone = copy.deepcopy(old)
        if rt.key == ("", "namespaces"):
            gone.setdefault("status", {})["phase"] = "Terminating"
            gone["metadata"]["deletionTimestamp"] = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._commit(rt, "DELETED", ns, name, gone, old)

    # ---- internals ---------------------------------------------------------------

    def _view(self, rt: ResourceType, obj: JSON) -> JSON:
        return copy.deepcopy(obj)

    def _check_type(self, rt: ResourceType, obj: JSON) -> None:
        if not isinstance(obj, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        api_version = obj.setdefault("apiVersion", rt.api_version)
        kind = obj.setdefault("kind", rt.kind)
        if api_version != rt.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
            )
        if kind != rt.kind:
            raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")

    def _namespace_for(self, rt: ResourceType, meta: JSON, url_namespace: str) -> str:
        if not rt.namespaced:
            meta.pop("namespace", None)
            return ""
        body_ns = meta.get("namespace") or ""
        if url_namespace and body_ns and body_ns != url_namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        ns = url_namespace or body_ns
        if not ns:
            raise errors.bad_request("an empty namespace may not be set during creation")
        return str(ns)

    def _defaults(self, rt: ResourceType, obj: JSON, created: bool) -> None:
        meta = obj["metadata"]
        if rt.key == ("", "namespaces"):
            labels = meta.get("labels") or {}
            labels[NAMESPACE_LABEL] = meta["name"]
            meta["labels"] = labels
            spec = obj.get("spec") or {}
            spec.setdefault("finalizers", ["kubernetes"])
            obj["spec"] = spec
            if created:
                obj["status"] = {"phase": "Active"}
        elif rt.key == ("", "pods") and created:
            status = obj.get("status") or {}
            status.setdefault("phase", "Pending")
            obj["status"] = status

    def _commit(self, rt: ResourceType, kind: EventType, ns: str, name: str, new: JSON, old: JSON | None) -> JSON:
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        bucket = self._objects.setdefault(rt.key, {})
        if kind == "DELETED":
            del bucket[(ns, name)]
        else:
            bucket[(ns, name)] = new
        if len(self._history) == self._history.maxlen:
            self._floor = self._history[0].rv
        event = Event(self._rv, kind, rt.key, ns, name, new, old)
        self._history.append(event)
        for listener in list(self.listeners):
            listener(event)
        return self._view(rt, new)
