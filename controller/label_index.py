"""Which pods each pod group selects, kept up to date one change at a time.

A *pod group* is a normalised (namespace scope, pod selector) pair: the
pods a policy's ``podSelector`` selects (scope: the policy's namespace),
or the pods a peer selects (scope: one namespace, or the namespaces a
``namespaceSelector`` matches).  Equal pairs have equal ids
(:func:`group_id`, a canonical string), so every policy that selects the
same way shares one group and, downstream, one ipset.

The index answers, for each registered group, its member pods (enforced
pods only, see ``Pod.enforced``), and turns every pod or namespace change
into membership edges (pod joined / left / stayed in a group).  It never
scans all groups or all pods for one change: groups are found through
their namespace (or, for namespace-selector groups, a per-namespace cache
of the selectors that match it) and pods through a per-namespace posting
list of ``label=value`` pairs.

What it does not do: IPs, nodes, named ports, sets or rules.  The engine
reads members and turns edges into set and span changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from controller.model import SELECT_ALL, LabelSelector, Pod

Posting = dict[tuple[str, str], set[str]]


@lru_cache(maxsize=65536)
def selector_key(sel: LabelSelector) -> str:
    """Canonical, unambiguous text of a selector (for ids and hashes)."""
    return json.dumps([list(sel.match_labels), [[r.key, r.operator, list(r.values)] for r in sel.expressions]],
                      separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """``namespace`` set: pods of that one namespace.  Otherwise pods of the
    namespaces ``ns_selector`` matches.  ``pod_selector`` then filters."""

    namespace: str | None
    ns_selector: LabelSelector | None
    pod_selector: LabelSelector = SELECT_ALL

    def text(self) -> str:
        scope = f"ns={self.namespace}" if self.namespace is not None else \
            f"nssel={self.ns_selector.text() if self.ns_selector else '<all>'}"
        return f"{scope} pods={self.pod_selector.text()}"


ALL_PODS = GroupSpec(None, SELECT_ALL, SELECT_ALL)


@lru_cache(maxsize=262144)
def group_id(spec: GroupSpec) -> str:
    if spec.namespace is not None:
        scope = "ns:" + spec.namespace
    else:
        scope = "sel:" + selector_key(spec.ns_selector or SELECT_ALL)
    return f"{scope}|{selector_key(spec.pod_selector)}"


@dataclass(slots=True)
class _Group:
    spec: GroupSpec
    members: set[str] = field(default_factory=set)
    refs: int = 0


def _candidates(sel: LabelSelector, posting: Posting, universe: Iterable[str]) -> Iterable[str]:
    """A superset of what ``sel`` selects: the smallest posting list of its
    ``matchLabels`` pairs, or the whole universe."""
    best: Iterable[str] | None = None
    size = -1
    for kv in sel.match_labels:
        s = posting.get(kv)
        if s is None:
            return ()
        if best is None or len(s) < size:
            best, size = s, len(s)
    return universe if best is None else best


class GroupIndex:
    """Registered groups and their members; single writer, no I/O."""

    def __init__(self) -> None:
        self._groups: dict[str, _Group] = {}
        self._by_ns: dict[str, set[str]] = {}  # namespace -> ids of groups scoped to it
        self._nssel: set[str] = set()  # ids of namespace-selector groups
        self._ns_matches: dict[str, set[str]] = {}  # namespace (with pods) -> nssel group ids matching it
        self._ns_labels: dict[str, Mapping[str, str]] = {}  # known Namespace objects
        self._ns_posting: Posting = {}  # label pair -> namespaces having it
        self._pods: dict[str, Pod] = {}  # enforced pods by key
        self._pods_by_ns: dict[str, set[str]] = {}
        self._posting: dict[str, Posting] = {}  # namespace -> label pair -> pod keys
        self._pod_groups: dict[str, set[str]] = {}  # pod key -> ids of groups it is in

    # ---------------------------------------------------------------- reads

    def members(self, gid: str) -> set[str]:
        return self._groups[gid].members

    def spec(self, gid: str) -> GroupSpec:
        return self._groups[gid].spec

    def has(self, gid: str) -> bool:
        return gid in self._groups

    def pod(self, key: str) -> Pod | None:
        return self._pods.get(key)

    def groups_of(self, pod_key: str) -> set[str]:
        return self._pod_groups.get(pod_key, set())

    def __len__(self) -> int:
        return len(self._groups)

    # --------------------------------------------------------------- groups

    def acquire(self, gid: str, spec: GroupSpec) -> bool:
        """Count one more user of the group; True when it is new (then its
        members are computed now)."""
        g = self._groups.get(gid)
        if g is not None:
            g.refs += 1
            return False
        g = self._groups[gid] = _Group(spec, refs=1)
        if spec.namespace is not None:
            self._by_ns.setdefault(spec.namespace, set()).add(gid)
            namespaces: Iterable[str] = (spec.namespace,) if spec.namespace in self._pods_by_ns else ()
        else:
            self._nssel.add(gid)
            nsel = spec.ns_selector or SELECT_ALL
            namespaces = []
            for ns in _candidates(nsel, self._ns_posting, list(self._pods_by_ns)):
                if ns in self._pods_by_ns and nsel.matches(self._ns_labels.get(ns, {})):
                    self._ns_matches[ns].add(gid)
                    namespaces.append(ns)
        psel = spec.pod_selector
        for ns in namespaces:
            for pk in _candidates(psel, self._posting[ns], self._pods_by_ns[ns]):
                if psel.matches(self._pods[pk].labels):
                    g.members.add(pk)
                    self._pod_groups[pk].add(gid)
        return True

    def release(self, gid: str) -> bool:
        """One user fewer; True when the group is gone."""
        g = self._groups[gid]
        g.refs -= 1
        if g.refs > 0:
            return False
        del self._groups[gid]
        if g.spec.namespace is not None:
            s = self._by_ns[g.spec.namespace]
            s.discard(gid)
            if not s:
                del self._by_ns[g.spec.namespace]
        else:
            self._nssel.discard(gid)
            for matches in self._ns_matches.values():
                matches.discard(gid)
        for pk in g.members:
            self._pod_groups[pk].discard(gid)
        return True

    # ----------------------------------------------------------------- pods

    def _groups_for(self, pod: Pod) -> set[str]:
        ns = pod.namespace
        out: set[str] = set()
        for gid in self._by_ns.get(ns, ()):
            if self._groups[gid].spec.pod_selector.matches(pod.labels):
                out.add(gid)
        for gid in self._ns_matches.get(ns, ()):
            if self._groups[gid].spec.pod_selector.matches(pod.labels):
                out.add(gid)
        return out

    def set_pod(self, key: str, pod: Pod | None) -> tuple[set[str], set[str], set[str]]:
        """Record ``pod`` (None or not enforced: gone).  Returns the group ids
        it (left, joined, stayed in)."""
        old = self._pods.get(key)
        if pod is not None and not pod.enforced:
            pod = None
        if old is not None:
            self._unindex_pod(key, old)
        old_groups = self._pod_groups.pop(key, set())
        if pod is None:
            for gid in old_groups:
                self._groups[gid].members.discard(key)
            return old_groups, set(), set()
        self._index_pod(key, pod)
        new_groups = self._groups_for(pod)
        self._pod_groups[key] = new_groups
        left = old_groups - new_groups
        joined = new_groups - old_groups
        for gid in left:
            self._groups[gid].members.discard(key)
        for gid in joined:
            self._groups[gid].members.add(key)
        return left, joined, old_groups & new_groups

    def _index_pod(self, key: str, pod: Pod) -> None:
        ns = pod.namespace
        self._pods[key] = pod
        keys = self._pods_by_ns.get(ns)
        if keys is None:
            keys = self._pods_by_ns[ns] = set()
            self._posting[ns] = {}
            nsl = self._ns_labels.get(ns, {})
            self._ns_matches[ns] = {gid for gid in self._nssel
                                    if (self._groups[gid].spec.ns_selector or SELECT_ALL).matches(nsl)}
        keys.add(key)
        posting = self._posting[ns]
        for kv in pod.labels.items():
            s = posting.get(kv)
            if s is None:
                posting[kv] = {key}
            else:
                s.add(key)

    def _unindex_pod(self, key: str, pod: Pod) -> None:
        ns = pod.namespace
        del self._pods[key]
        posting = self._posting[ns]
        for kv in pod.labels.items():
            s = posting[kv]
            s.discard(key)
            if not s:
                del posting[kv]
        keys = self._pods_by_ns[ns]
        keys.discard(key)
        if not keys:
            del self._pods_by_ns[ns], self._posting[ns], self._ns_matches[ns]

    # ----------------------------------------------------------- namespaces

    def set_namespace(self, name: str, labels: Mapping[str, str] | None) -> list[tuple[str, str, bool]]:
        """Record a namespace's labels (None: deleted; its pods then count as
        in a namespace without labels).  Returns membership edges
        ``(group id, pod key, joined)``."""
        old = self._ns_labels.get(name)
        if old is not None:
            for kv in old.items():
                s = self._ns_posting[kv]
                s.discard(name)
                if not s:
                    del self._ns_posting[kv]
        if labels is None:
            self._ns_labels.pop(name, None)
        else:
            self._ns_labels[name] = labels
            for kv in labels.items():
                self._ns_posting.setdefault(kv, set()).add(name)
        if name not in self._pods_by_ns:
            return []
        nsl = labels or {}
        was = self._ns_matches[name]
        now = {gid for gid in self._nssel if (self._groups[gid].spec.ns_selector or SELECT_ALL).matches(nsl)}
        self._ns_matches[name] = now
        edges: list[tuple[str, str, bool]] = []
        pods = self._pods_by_ns[name]
        for gid in now - was:
            g = self._groups[gid]
            for pk in pods:
                if g.spec.pod_selector.matches(self._pods[pk].labels):
                    g.members.add(pk)
                    self._pod_groups[pk].add(gid)
                    edges.append((gid, pk, True))
        for gid in was - now:
            g = self._groups[gid]
            for pk in pods:
                if pk in g.members:
                    g.members.discard(pk)
                    self._pod_groups[pk].discard(gid)
                    edges.append((gid, pk, False))
        return edges
