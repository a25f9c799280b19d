"""The incremental policy engine: the cluster model in, each node's desired
state (``stockade.state.NodeState``) out.

Data flow (one writer calls the setters, then ``flush``)::

    set_pod / set_namespace ──> label_index (groups' members) ──edges──┬──> compile_sets
    set_policy ──> compile_policy (chains, set defs, once per policy)  │    (cluster-wide sets)
                     │ acquire groups/sets                              v
                     └──> span (target group -> nodes) ──dirty nodes──> flush:
                                                         1. refresh changed cluster-wide sets
                                                         2. per dirty node: bundle (compile_node:
                                                            shared chains) + target/isolation sets
                                                         3. report nodes whose state changed

Every mutation marks only what it touches: the sets of the groups a pod or
namespace change moved, the nodes that host those groups' selected pods,
the bundles that carry a changed policy.  Work is done lazily in
``flush``/``node_state``.  A recompute that yields equal content keeps the
old objects (sets, family states, node states), so an unchanged node is
not reported and ``stockade.state.diff`` between consecutive states is
cheap (identity checks).

IPv6 is compiled (``state.v6`` and ``stk6`` sets) once the cluster has an
IPv6 pod address or ipBlock, unless ``CompileSettings.families`` fixes the
families; the switch recompiles everything once.

Pure: no I/O, no asyncio, no clock.  Not thread-safe (single writer).
Removed nodes are dropped from ``nodes()`` and never reported by ``flush``.
The engine builds no reference cycles (its garbage goes by reference
counting), so a controller may ``gc.freeze()`` after its first full sync
and keep the cyclic GC from walking the whole model (benchmarks/engine_bench.py
measures both).  The rule layout is documented in ``controller.compile_node``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller import naming
from controller.compile_node import Bundle, build_bundle
from controller.compile_policy import CompiledPolicy, CompileSettings, compile_policy, uses_ipv6
from controller.compile_sets import ClusterSets
from controller.label_index import GroupIndex
from controller.model import Namespace, NetworkPolicy, Node, Pod, load_records
from controller.span import SpanIndex
from stockade.state import FAMILIES, Family, IPSet, NodeState
from stockade.state_validation import validate


@dataclass(frozen=True, slots=True)
class PolicySummary:
    key: str
    valid: bool
    selected: int  # pods the policy selects
    nodes: int  # nodes it spans
    errors: tuple[str, ...] = ()


def _same_sets(old: Mapping[str, IPSet], new: dict[str, IPSet]) -> bool:
    if len(old) != len(new):
        return False
    get = old.get
    return all(get(k) is v for k, v in new.items())


class Engine:
    """Model -> per-node desired state, incrementally.  See the module doc."""

    def __init__(self, settings: CompileSettings | None = None) -> None:
        self.settings = settings or CompileSettings()
        self._index = GroupIndex()
        self._span = SpanIndex()
        self._pods: dict[str, Pod] = {}
        self._namespaces: dict[str, Namespace] = {}
        self._nodes: dict[str, Node] = {}
        self._node_pods: dict[str, int] = {}  # node -> pods naming it in spec.nodeName
        self._policies: dict[str, NetworkPolicy] = {}  # valid policies
        self._compiled: dict[str, CompiledPolicy] = {}
        self._invalid: dict[str, tuple[str, ...]] = {}
        self._v6_pods = 0  # enforced pods with an IPv6 address
        self._v6_policies: set[str] = set()
        self._families: tuple[Family, ...] = self._want_families()
        # cluster-wide sets (peers, named ports, ipBlocks), one object for every node
        self._sets = ClusterSets(lambda gid: [self._pods[pk] for pk in self._index.members(gid)])
        # bundles (shared chains), keyed by a node's target groups
        self._bundles: dict[frozenset[str], Bundle] = {}
        self._stale: dict[frozenset[str], Bundle] = {}  # invalidated, kept to reuse equal parts
        self._bundle_nodes: dict[frozenset[str], set[str]] = {}
        self._group_bundles: dict[str, set[frozenset[str]]] = {}
        self._set_bundles: dict[str, set[frozenset[str]]] = {}
        self._node_bundle: dict[str, frozenset[str]] = {}
        # per node
        self._states: dict[str, NodeState] = {}
        self._targets: dict[str, dict[str, tuple[IPSet, ...]]] = {}  # node -> group -> target set per family
        self._iso: dict[str, dict[str, IPSet]] = {}  # node -> isolation sets
        self._tmeta: dict[str, tuple[tuple[str, ...], str]] = {}  # target group -> (set name per family, comment)
        self._node_bundle_obj: dict[str, Bundle] = {}  # node -> bundle its current state was built from
        self._changed_globals: set[str] = set()  # cluster-wide sets refilled since the last flush
        self._dirty_targets: dict[str, set[str]] = {}  # node -> groups whose pods there changed
        self._dirty_nodes: set[str] = set()
        self._changed: set[str] = set()  # nodes whose state object changed since the last flush
        self._flushed: dict[str, NodeState] = {}

    # ================================================================ inputs

    def load(self, namespaces: Iterable[Namespace] = (), nodes: Iterable[Node] = (), pods: Iterable[Pod] = (),
             policies: Iterable[NetworkPolicy] = ()) -> None:
        """Set many records at once (a first list, a benchmark's cluster);
        nothing is computed until :meth:`flush`."""
        load_records(self, namespaces, nodes, pods, policies)

    def set_namespace(self, ns: Namespace) -> None:
        old = self._namespaces.get(ns.name)
        if old == ns:
            return
        self._namespaces[ns.name] = ns
        self._ns_edges(ns.name, ns.labels)

    def remove_namespace(self, name: str) -> None:
        if self._namespaces.pop(name, None) is not None:
            self._ns_edges(name, None)

    def _ns_edges(self, name: str, labels: Mapping[str, str] | None) -> None:
        for gid, pk, joined in self._index.set_namespace(name, labels):
            pod = self._pods[pk]
            self._edge(gid, pk, None if joined else pod, pod if joined else None)

    def set_node(self, node: Node) -> None:
        if self._nodes.get(node.name) == node:
            return
        known = self._known(node.name)
        self._nodes[node.name] = node
        if not known:
            self._dirty_nodes.add(node.name)

    def remove_node(self, name: str) -> None:
        if self._nodes.pop(name, None) is not None and not self._known(name):
            self._forget(name)

    def set_pod(self, pod: Pod) -> None:
        key = pod.key
        old = self._pods.get(key)
        if old == pod:
            return
        self._pods[key] = pod
        self._pod_changed(key, old, pod)

    def remove_pod(self, key: str) -> None:
        old = self._pods.pop(key, None)
        if old is not None:
            self._pod_changed(key, old, None)

    def set_policy(self, p: NetworkPolicy) -> None:
        key = p.key
        if self._policies.get(key) == p:
            return
        self._invalid.pop(key, None)
        old = self._compiled.get(key)
        cp = compile_policy(p, self.settings, self._families)
        self._policies[key] = p
        self._compiled[key] = cp
        self._acquire(cp)
        if old is not None:
            self._span_remove(old)
        self._span_add(cp)
        if old is not None:
            self._release(old)
        if uses_ipv6(p):
            self._v6_policies.add(key)
        else:
            self._v6_policies.discard(key)
        self._check_families()

    def set_invalid_policy(self, key: str, errors: list[str]) -> None:
        """An invalid policy is reported and enforces nothing; a valid
        version it replaces stops applying."""
        self._drop_policy(key)
        self._invalid[key] = tuple(errors)

    def remove_policy(self, key: str) -> None:
        self._drop_policy(key)
        self._invalid.pop(key, None)

    def _drop_policy(self, key: str) -> None:
        old = self._compiled.pop(key, None)
        if old is None:
            return
        del self._policies[key]
        self._span_remove(old)
        self._release(old)
        self._v6_policies.discard(key)
        self._check_families()

    # ================================================================ outputs

    def nodes(self) -> list[str]:
        """Known nodes: Node objects and nodes named by pods."""
        return sorted(set(self._nodes) | set(self._node_pods))

    def node_state(self, node: str) -> NodeState:
        """The current desired state of ``node`` (base state if unknown)."""
        if not self._known(node):
            return self._transient(node)
        if node in self._dirty_nodes or node not in self._states or self._sets.dirty:
            self._refresh()
            if node in self._dirty_nodes or node not in self._states:
                self._assemble(node)
                self._dirty_nodes.discard(node)
        return self._states[node]

    def flush(self) -> dict[str, NodeState]:
        """Nodes whose desired state changed since the last flush -> new state."""
        self._refresh()
        for node in self._dirty_nodes:
            if self._known(node):
                self._assemble(node)
        self._dirty_nodes.clear()
        self._changed_globals.clear()
        out: dict[str, NodeState] = {}
        for node in self._changed:
            st = self._states.get(node)
            if st is not None and self._flushed.get(node) is not st:
                out[node] = st
        self._flushed.update(out)
        self._changed.clear()
        return out

    def policy_info(self, key: str) -> tuple[list[str], list[str], list[str]]:
        """(selected pod keys, nodes spanned, errors) of a policy; KeyError if unknown."""
        if key in self._invalid:
            return [], [], list(self._invalid[key])
        cp = self._compiled[key]
        return sorted(self._index.members(cp.target)), self._span.nodes_of(cp.target), []

    def policies(self) -> list[PolicySummary]:
        out = [PolicySummary(k, True, len(self._index.members(cp.target)), len(self._span.local.get(cp.target, ())))
               for k, cp in self._compiled.items()]
        out += [PolicySummary(k, False, 0, 0, e) for k, e in self._invalid.items()]
        return sorted(out, key=lambda s: s.key)

    def stats(self) -> dict[str, int]:
        return {
            "pods": len(self._pods), "namespaces": len(self._namespaces), "nodes": len(self.nodes()),
            "policies": len(self._compiled), "invalid_policies": len(self._invalid),
            "groups": len(self._index), "cluster_sets": len(self._sets),
            "bundles": len(self._bundles), "node_states": len(self._states),
            "families": len(self._families),
        }

    # ================================================================ pods

    def _known(self, node: str) -> bool:
        return node in self._nodes or node in self._node_pods

    def _pod_changed(self, key: str, old: Pod | None, new: Pod | None) -> None:
        if (old.node if old else "") != (new.node if new else ""):
            if old is not None and old.node:
                n = self._node_pods[old.node] - 1
                if n:
                    self._node_pods[old.node] = n
                else:
                    del self._node_pods[old.node]
                    if old.node not in self._nodes:
                        self._forget(old.node)
            if new is not None and new.node:
                n = self._node_pods.get(new.node, 0)
                self._node_pods[new.node] = n + 1
                if not n and new.node not in self._nodes:
                    self._dirty_nodes.add(new.node)
        old_e = old if old is not None and old.enforced else None
        new_e = new if new is not None and new.enforced else None
        if old_e is None and new_e is None:
            return
        left, joined, stayed = self._index.set_pod(key, new_e)
        for gid in left:
            self._edge(gid, key, old_e, None)
        for gid in joined:
            self._edge(gid, key, None, new_e)
        if stayed and old_e is not None and new_e is not None and (
                old_e.node != new_e.node or old_e.ips != new_e.ips or old_e.ports != new_e.ports):
            for gid in stayed:
                self._edge(gid, key, old_e, new_e)
        v6 = (new_e is not None and any(":" in ip for ip in new_e.ips)) - \
            (old_e is not None and any(":" in ip for ip in old_e.ips))
        if v6:
            self._v6_pods += v6
            self._check_families()

    def _edge(self, gid: str, key: str, old: Pod | None, new: Pod | None) -> None:
        """Pod ``key`` changed in group ``gid`` (old/new: its record as a member, None: not one)."""
        self._sets.edge(gid, old, new)
        if self._span.is_target(gid):
            if old is not None and old.node:
                self._span.member_left(gid, key, old.node)
                self._touch(old.node, gid)
            if new is not None and new.node:
                self._span.member_joined(gid, key, new.node)
                self._touch(new.node, gid)

    def _touch(self, node: str, gid: str) -> None:
        d = self._dirty_targets.get(node)
        if d is None:
            self._dirty_targets[node] = {gid}
        else:
            d.add(gid)
        self._dirty_nodes.add(node)

    # ================================================================ policies

    def _acquire(self, cp: CompiledPolicy) -> None:
        for gid, spec in cp.groups.items():
            self._index.acquire(gid, spec)
        self._sets.acquire(cp)

    def _release(self, cp: CompiledPolicy) -> None:
        self._sets.release(cp)
        for gid in cp.groups:
            if self._index.release(gid):
                self._tmeta.pop(gid, None)

    def _span_add(self, cp: CompiledPolicy) -> None:
        pods = self._pods
        members = ((pk, pods[pk].node) for pk in self._index.members(cp.target))
        self._dirty_nodes.update(self._span.add_target(cp.target, cp.key, members))
        self._invalidate(cp.target)

    def _span_remove(self, cp: CompiledPolicy) -> None:
        self._invalidate(cp.target)
        self._dirty_nodes.update(self._span.remove_target(cp.target, cp.key))

    def _want_families(self) -> tuple[Family, ...]:
        if self.settings.families is not None:
            return self.settings.families
        return ("inet", "inet6") if self._v6_pods or self._v6_policies else ("inet",)

    def _check_families(self) -> None:
        fams = self._want_families()
        if fams == self._families:
            return
        self._families = fams
        for key, old in list(self._compiled.items()):
            cp = compile_policy(self._policies[key], self.settings, fams)
            self._compiled[key] = cp
            self._acquire(cp)
            self._span_remove(old)
            self._span_add(cp)
            self._release(old)
        for node, bkey in list(self._node_bundle.items()):
            self._detach(node, bkey)
        self._bundles.clear()
        self._stale.clear()
        self._set_bundles.clear()
        self._targets.clear()
        self._iso.clear()
        self._tmeta.clear()
        self._node_bundle_obj.clear()
        self._dirty_nodes.update(self.nodes())

    # ================================================================ bundles

    def _invalidate(self, gid: str) -> None:
        for key in self._group_bundles.get(gid, ()):
            b = self._bundles.pop(key, None)
            if b is not None:
                self._unindex_sets(b)
                self._stale[key] = b
            self._dirty_nodes.update(self._bundle_nodes[key])

    def _unindex_sets(self, b: Bundle) -> None:
        for name in b.global_sets:
            keys = self._set_bundles.get(name)
            if keys is not None:
                keys.discard(b.groups)
                if not keys:
                    del self._set_bundles[name]

    def _bundle(self, key: frozenset[str], prev: Bundle | None = None) -> Bundle:
        """The bundle of ``key``, built if needed (from ``prev``, the node's
        previous bundle, or the invalidated one of the same key, when their
        chains still hold)."""
        b = self._bundles.get(key)
        if b is not None:
            return b
        pols = self._span.policies
        keys = sorted({pk for gid in key for pk in pols.get(gid, ())})
        old = self._stale.pop(key, None)
        b = build_bundle(key, [self._compiled[k] for k in keys], self.settings, self._families, old or prev)
        if old is not None and b.v4 is not old.v4:
            b = dataclasses.replace(b, v4=old.v4 if old.v4 == b.v4 else b.v4, v6=old.v6 if old.v6 == b.v6 else b.v6)
        self._bundles[key] = b
        for name in b.global_sets:
            self._set_bundles.setdefault(name, set()).add(key)
        return b

    def _attach(self, node: str, key: frozenset[str]) -> None:
        nodes = self._bundle_nodes.get(key)
        if nodes is None:
            nodes = self._bundle_nodes[key] = set()
            for gid in key:
                self._group_bundles.setdefault(gid, set()).add(key)
        nodes.add(node)
        self._node_bundle[node] = key

    def _detach(self, node: str, key: frozenset[str]) -> None:
        nodes = self._bundle_nodes[key]
        nodes.discard(node)
        del self._node_bundle[node]
        if nodes:
            return
        del self._bundle_nodes[key]
        for gid in key:
            gb = self._group_bundles[gid]
            gb.discard(key)
            if not gb:
                del self._group_bundles[gid]
        b = self._bundles.pop(key, None)
        if b is not None:
            self._unindex_sets(b)
        self._stale.pop(key, None)

    # ================================================================ flush

    def _refresh(self) -> None:
        """Refill dirty cluster-wide sets; nodes using a changed one become dirty."""
        if not self._sets.dirty:
            return
        for name in self._sets.refresh():
            self._changed_globals.add(name)
            for key in self._set_bundles.get(name, ()):
                self._dirty_nodes.update(self._bundle_nodes[key])

    def _target_sets(self, gid: str, node: str, prev: tuple[IPSet, ...] | None) -> tuple[IPSet, ...]:
        pods = self._pods
        local = self._span.local[gid].get(node, ())
        ips = [ip for pk in local for ip in pods[pk].ips]
        meta = self._tmeta.get(gid)
        if meta is None:
            meta = self._tmeta[gid] = (tuple(naming.set_name(naming.TARGET, fam, gid) for fam in self._families),
                                       self._index.spec(gid).text())
        out: list[IPSet] = []
        for i, fam in enumerate(self._families):
            v6 = fam == "inet6"
            members = frozenset([ip for ip in ips if (":" in ip) == v6])
            if prev is not None and prev[i].members == members:
                out.append(prev[i])
            else:
                out.append(IPSet(meta[0][i], "hash:ip", fam, members, comment=meta[1]))
        return tuple(out)

    def _iso_sets(self, b: Bundle, node: str, prev: dict[str, IPSet] | None) -> dict[str, IPSet]:
        pods = self._pods
        local = self._span.local
        out: dict[str, IPSet] = {}
        for direction, groups in (("ingress", b.ingress_groups), ("egress", b.egress_groups)):
            ips = {ip for g in groups for pk in local[g].get(node, ()) for ip in pods[pk].ips}
            for fam in self._families:
                v6 = fam == "inet6"
                name = naming.isolated_set(direction, fam)
                members = frozenset([ip for ip in ips if (":" in ip) == v6])
                old = prev.get(name) if prev else None
                out[name] = old if old is not None and old.members == members else IPSet(
                    name, "hash:ip", fam, members, counters=True, comment=f"pods isolated for {direction}")
        return out

    def _assemble(self, node: str) -> None:
        old_key = self._node_bundle.get(node)
        if old_key is None or node in self._span.changed:
            key = self._span.groups_on(node)
            self._span.changed.discard(node)
        else:
            key = old_key
        if old_key != key:
            if old_key is not None:
                self._detach(node, old_key)
            self._attach(node, key)
        b = self._bundle(key, self._node_bundle_obj.get(node))
        dirty = self._dirty_targets.pop(node, None)
        old = self._states.get(node)
        prev_b = self._node_bundle_obj.get(node)
        same_bundle = prev_b is b
        self._node_bundle_obj[node] = b
        if old is not None and same_bundle and dirty is None:
            # Fast path: only cluster-wide sets changed (a peer's pods).
            glob = self._sets.current
            sets = dict(old.sets)
            changed = False
            for name in self._changed_globals:
                if name in sets and sets[name] is not glob[name]:
                    sets[name] = glob[name]
                    changed = True
            if changed:
                self._states[node] = NodeState(node, sets, b.v4, b.v6)
                self._changed.add(node)
            return
        tcache = self._targets.get(node)
        if tcache is None:
            tcache = self._targets[node] = {}
        jumps = b.jump_groups
        for gid in [g for g in tcache if g not in jumps]:
            del tcache[gid]
        glob = self._sets.current
        sets = {name: glob[name] for name in b.global_sets}
        for gid in jumps:
            ts = tcache.get(gid)
            if ts is None or (dirty is not None and gid in dirty):
                ts = tcache[gid] = self._target_sets(gid, node, ts)
            for s in ts:
                sets[s.name] = s
        iso = self._iso.get(node)
        if iso is None or dirty is not None or prev_b is None or prev_b.ingress_groups != b.ingress_groups \
                or prev_b.egress_groups != b.egress_groups:
            iso = self._iso[node] = self._iso_sets(b, node, iso)
        sets.update(iso)
        if old is not None and old.v4 is b.v4 and old.v6 is b.v6 and _same_sets(old.sets, sets):
            return
        self._states[node] = NodeState(node, sets, b.v4, b.v6)
        self._changed.add(node)

    def _transient(self, node: str) -> NodeState:
        b = build_bundle(frozenset(), [], self.settings, self._families)
        return NodeState(node, self._iso_sets(b, node, None), b.v4, b.v6)

    def _forget(self, node: str) -> None:
        key = self._node_bundle.get(node)
        if key is not None:
            self._detach(node, key)
        for d in (self._states, self._targets, self._iso, self._dirty_targets, self._flushed, self._node_bundle_obj):
            d.pop(node, None)
        self._dirty_nodes.discard(node)
        self._changed.discard(node)
        self._span.changed.discard(node)


def check_settings(settings: CompileSettings) -> None:
    """Raise :class:`stockade.state.StateError` when a node compiled with
    ``settings`` would be refused by every agent: the state of a node
    without policies (its base chains carry every settings-made rule, the
    NFLOG rules included) for both families, checked by the agents' own
    :func:`stockade.state_validation.validate`."""
    e = Engine(dataclasses.replace(settings, families=FAMILIES))
    validate(e._transient("settings-check"))
