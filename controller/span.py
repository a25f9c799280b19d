"""Span: which nodes need which policy, kept explicit (Antrea style).

A policy applies on exactly the nodes hosting at least one pod it selects.
Policies select through their *target group* (``label_index``); this index
keeps, for each group some policy targets, its member pods by node, and for
each node the target groups that have pods there.  A node's set of target
groups is the key of its ``compile_node.Bundle``.

Every change reports the nodes whose span changed (a group entered or left
the node, or the node's pods in a group changed), so the engine recomputes
exactly those nodes.  Groups no policy targets are not tracked here.

What it does not do: membership (``label_index``), rules or sets.
"""

from __future__ import annotations

from collections.abc import Iterable


class SpanIndex:
    """Target groups -> policies and nodes; nodes -> target groups."""

    def __init__(self) -> None:
        self.policies: dict[str, set[str]] = {}  # group id -> keys of policies targeting it
        self.local: dict[str, dict[str, set[str]]] = {}  # group id -> node -> member pod keys there
        self.node_groups: dict[str, set[str]] = {}  # node -> target group ids with pods there
        self.changed: set[str] = set()  # nodes whose target groups changed (the engine clears it)

    def is_target(self, gid: str) -> bool:
        return gid in self.policies

    def nodes_of(self, gid: str) -> list[str]:
        return sorted(self.local.get(gid, ()))

    def groups_on(self, node: str) -> frozenset[str]:
        return frozenset(self.node_groups.get(node, ()))

    def add_target(self, gid: str, policy: str, members: Iterable[tuple[str, str]]) -> set[str]:
        """``policy`` now targets ``gid`` whose members are (pod key, node)
        pairs.  Returns the nodes touched."""
        pols = self.policies.get(gid)
        if pols is not None:
            pols.add(policy)
            return set(self.local.get(gid, {}))
        self.policies[gid] = {policy}
        by_node: dict[str, set[str]] = {}
        for pk, node in members:
            if node:
                s = by_node.get(node)
                if s is None:
                    s = by_node[node] = set()
                    self.node_groups.setdefault(node, set()).add(gid)
                    self.changed.add(node)
                s.add(pk)
        self.local[gid] = by_node
        return set(by_node)

    def remove_target(self, gid: str, policy: str) -> set[str]:
        """``policy`` no longer targets ``gid``; returns the nodes touched."""
        pols = self.policies[gid]
        pols.discard(policy)
        nodes = set(self.local.get(gid, {}))
        if not pols:
            del self.policies[gid]
            for node in self.local.pop(gid, {}):
                self.changed.add(node)
                ng = self.node_groups[node]
                ng.discard(gid)
                if not ng:
                    del self.node_groups[node]
        return nodes

    def member_left(self, gid: str, pod: str, node: str) -> None:
        by_node = self.local[gid]
        s = by_node.get(node)
        if s is None:
            return
        s.discard(pod)
        if not s:
            del by_node[node]
            self.changed.add(node)
            ng = self.node_groups[node]
            ng.discard(gid)
            if not ng:
                del self.node_groups[node]

    def member_joined(self, gid: str, pod: str, node: str) -> None:
        if not node:
            return
        by_node = self.local[gid]
        s = by_node.get(node)
        if s is None:
            s = by_node[node] = set()
            self.node_groups.setdefault(node, set()).add(gid)
            self.changed.add(node)
        s.add(pod)
