"""Cluster-wide sets: which exist, what they hold, and when they change.

Policies name three kinds of cluster-wide sets (``compile_policy``): peer
sets (``hash:ip``: the IPs of a pod group), named-port sets
(``hash:ip,port``: ``ip,proto:port`` of the group's pods that serve the
named port) and ipBlock sets (``hash:net``, fixed content).  One set
object serves every node and every policy naming it; this store keeps it.

Each set is reference-counted by the policies naming it.  A new peer or
port set is filled once from its group; after that it follows *member
edges* (a pod joined, left, or changed while in the group) applied to a
per-set count of member texts, so a pod change costs O(that pod), not
O(group).  ``refresh`` publishes a new ``IPSet`` object only when the
members really changed, and returns the names that did.

What it does not do: decide group membership (``label_index``) or which
nodes use a set (the engine's bundles).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from controller import naming
from controller.compile_policy import CompiledPolicy, SetDef
from controller.model import Pod, Protocol
from stockade.state import IPSet

Edge = tuple[Pod | None, Pod | None]


def members_of(sd: SetDef, pod: Pod) -> list[str]:
    """What ``pod`` contributes to set ``sd``."""
    v6 = sd.family == "inet6"
    if sd.kind == naming.PEER:
        return [ip for ip in pod.ips if (":" in ip) == v6]
    proto: Protocol = "TCP" if sd.proto == "tcp" else "UDP" if sd.proto == "udp" else "SCTP"
    port = pod.named_port(sd.port, proto)
    if port is None:
        return []
    return [f"{ip},{sd.proto}:{port}" for ip in pod.ips if (":" in ip) == v6]


class ClusterSets:
    """Set name -> current ``IPSet``; single writer."""

    def __init__(self, members: Callable[[str], Iterable[Pod]]) -> None:
        self._group_pods = members  # group id -> its member pods (current records)
        self.current: dict[str, IPSet] = {}  # published objects, dynamic and static
        self._defs: dict[str, SetDef] = {}  # dynamic sets
        self._refs: dict[str, int] = {}  # set name -> policies naming it
        self._by_group: dict[str, set[str]] = {}  # group id -> dynamic sets filled from it
        self._new: set[str] = set()  # dynamic sets to fill from their group
        self._edges: dict[str, list[Edge]] = {}  # dynamic set -> pending member edges
        self._counts: dict[str, dict[str, int]] = {}  # dynamic set -> member text -> pods giving it

    def __len__(self) -> int:
        return len(self.current)

    @property
    def dirty(self) -> bool:
        return bool(self._new or self._edges)

    def acquire(self, cp: CompiledPolicy) -> None:
        for name, sd in cp.dynamic_sets.items():
            n = self._refs.get(name, 0)
            self._refs[name] = n + 1
            if not n:
                self._defs[name] = sd
                self._by_group.setdefault(sd.group, set()).add(name)
                self._new.add(name)
        for name, s in cp.static_sets.items():
            n = self._refs.get(name, 0)
            self._refs[name] = n + 1
            if not n:
                self.current[name] = s

    def release(self, cp: CompiledPolicy) -> None:
        for name in (*cp.dynamic_sets, *cp.static_sets):
            n = self._refs[name] - 1
            if n:
                self._refs[name] = n
                continue
            del self._refs[name]
            self.current.pop(name, None)
            self._new.discard(name)
            self._edges.pop(name, None)
            self._counts.pop(name, None)
            sd = self._defs.pop(name, None)
            if sd is not None:
                gs = self._by_group[sd.group]
                gs.discard(name)
                if not gs:
                    del self._by_group[sd.group]

    def edge(self, gid: str, old: Pod | None, new: Pod | None) -> None:
        """A member of group ``gid`` changed: ``old``/``new`` its record as a
        member before/after (None: not a member)."""
        names = self._by_group.get(gid)
        if not names:
            return
        for name in names:
            if name not in self._new:
                d = self._edges.get(name)
                if d is None:
                    self._edges[name] = [(old, new)]
                else:
                    d.append((old, new))

    def refresh(self) -> list[str]:
        """Apply pending fills and edges; the names whose members changed."""
        changed: list[str] = []
        for name in self._new:
            sd = self._defs[name]
            counts: dict[str, int] = {}
            for pod in self._group_pods(sd.group):
                for m in members_of(sd, pod):
                    counts[m] = counts.get(m, 0) + 1
            self._counts[name] = counts
            self._publish(name, sd, counts, changed)
        for name, edges in self._edges.items():
            if name in self._new:
                continue
            sd = self._defs[name]
            counts = self._counts[name]
            for old, new in edges:
                if old is not None:
                    for m in members_of(sd, old):
                        c = counts[m] - 1
                        if c:
                            counts[m] = c
                        else:
                            del counts[m]
                if new is not None:
                    for m in members_of(sd, new):
                        counts[m] = counts.get(m, 0) + 1
            self._publish(name, sd, counts, changed)
        self._new.clear()
        self._edges.clear()
        return changed

    def _publish(self, name: str, sd: SetDef, counts: dict[str, int], changed: list[str]) -> None:
        old = self.current.get(name)
        members = frozenset(counts)
        if old is not None and old.members == members:
            return
        self.current[name] = IPSet(name, "hash:ip" if sd.kind == naming.PEER else "hash:ip,port", sd.family,
                                   members, comment=sd.comment)
        changed.append(name)
