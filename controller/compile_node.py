"""The per-node layout: base chains, phase chains and the node's sets.

Authoritative rule layout (per node, per family; ``E``/``I`` are the
egress/ingress mark bits of ``CompileSettings``, default 0x100000/0x200000):

Hooks (position 1 in the host's built-in chains)::

    FORWARD -j STOCKADE-FORWARD      pod <-> pod, pod <-> outside, outside -> pod
    INPUT   -j STOCKADE-INPUT        pod -> this node (egress side only)

OUTPUT is not hooked: a node always reaches its own pods (kubelet probes).

``STOCKADE-FORWARD``::

    -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN
    -m set --match-set stk4-iso-egress src -m conntrack --ctstate INVALID -j DROP
    -m set --match-set stk4-iso-ingress dst -m conntrack --ctstate INVALID -j DROP
    -j MARK --set-xmark 0x0/E|I           (start every pass with both bits clear)
    -j STOCKADE-EGRESS
    -j STOCKADE-INGRESS

``STOCKADE-INPUT``: the same without the ingress lines.

``STOCKADE-EGRESS`` (``STOCKADE-INGRESS``: ``dst`` and ``I``)::

    -m set --match-set <targets of P> src -j STOCKADE-E-<P>   one per policy P with egress rules
                                                                on this node, sorted by key
    [-m mark ! --mark E/E -m set --match-set stk4-iso-egress src -m limit -j NFLOG]  (optional)
    -m mark ! --mark E/E -m set --match-set stk4-iso-egress src -j DROP

``STOCKADE-E-<P>`` / ``STOCKADE-I-<P>``: see ``controller.compile_policy``
(rules that only ``MARK``).  Our chains never ACCEPT: allowed packets
RETURN to the rest of the host's chain; denied ones are dropped.

Sets on a node: the cluster-wide peer / ipBlock / named-port sets its
policies name (the same objects on every node); one target set per
selected group that a jump rule names (``stk4t-<hash(group)>``: only this
node's pods; policies selecting the same way share it; a policy without
rules in a direction has no jump and needs none); and the two isolation
sets (``stk4-iso-ingress``/``-egress``: this node's pods selected by some
policy of that direction, with counters so drops can be counted per pod).
A node with no selected pods gets the base chains and empty isolation
sets: it allows everything.  IPv6 (``ip6tables``, ``stk6`` sets) has the
same layout.

Everything a set of policies compiles to is a :class:`Bundle`, shared by
every node whose pods are selected by the same groups (in a cluster where
every policy selects pods on every node, one bundle serves all nodes).

What it does not do: track which nodes need which bundle (``span``), or
fill cluster-wide sets (``compile_sets``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from controller import naming
from controller.compile_policy import CompiledPolicy, CompileSettings
from stockade.state import Chain, Family, FamilyState, Hook, Rule, SetMatch

EMPTY_FAMILY = FamilyState()


@dataclass(frozen=True, slots=True)
class Bundle:
    """The chains of one set of target groups' policies."""

    groups: frozenset[str]  # target groups with pods on the node (the bundle's key)
    policies: tuple[str, ...]  # keys of the policies those groups carry, sorted
    v4: FamilyState
    v6: FamilyState
    global_sets: tuple[str, ...]  # cluster-wide sets the chains name
    ingress_groups: frozenset[str]  # groups isolated for ingress (fill stk?-iso-ingress)
    egress_groups: frozenset[str]
    jump_groups: frozenset[str]  # groups whose target set a jump rule names (others need none)
    jump_policies: tuple[CompiledPolicy, ...] = ()  # the policies with rules: all that the chains depend on


@lru_cache(maxsize=64)
def base_rules(settings: CompileSettings, fam: Family) -> tuple[tuple[Rule, ...], tuple[Rule, ...], Rule, Rule]:
    """(FORWARD rules, INPUT rules, egress DROP tail..., ingress tail) for a family."""
    iso_e = naming.isolated_set("egress", fam)
    iso_i = naming.isolated_set("ingress", fam)
    both = settings.egress_mark | settings.ingress_mark
    est = Rule("RETURN", ctstate=("RELATED", "ESTABLISHED"), comment="stockade: established")
    inv_e = Rule("DROP", sets=(SetMatch(iso_e, ("src",)),), ctstate=("INVALID",), comment="stockade: invalid")
    inv_i = Rule("DROP", sets=(SetMatch(iso_i, ("dst",)),), ctstate=("INVALID",), comment="stockade: invalid")
    clear = Rule("MARK", set_mark=(0, both), comment="stockade: clear policy bits")
    to_e = Rule("JUMP", target=naming.EGRESS_CHAIN)
    to_i = Rule("JUMP", target=naming.INGRESS_CHAIN)
    drop_e = Rule("DROP", sets=(SetMatch(iso_e, ("src",)),), mark=(settings.egress_mark, settings.egress_mark, True),
                  comment="stockade: egress not allowed")
    drop_i = Rule("DROP", sets=(SetMatch(iso_i, ("dst",)),), mark=(settings.ingress_mark, settings.ingress_mark, True),
                  comment="stockade: ingress not allowed")
    return (est, inv_e, inv_i, clear, to_e, to_i), (est, inv_e, clear, to_e), drop_e, drop_i


def _tail(settings: CompileSettings, drop: Rule, direction: str) -> tuple[Rule, ...]:
    if settings.nflog_group is None:
        return (drop,)
    log = Rule("NFLOG", sets=drop.sets, mark=drop.mark, limit=settings.nflog_limit,
               nflog_group=settings.nflog_group, nflog_prefix=f"stockade-drop-{direction}",
               comment=f"stockade: log {direction} drops")
    return (log, drop)


HOOKS = (Hook("FORWARD", naming.FORWARD_CHAIN, 1), Hook("INPUT", naming.INPUT_CHAIN, 1))


@lru_cache(maxsize=64)
def _base_chains(settings: CompileSettings, fam: Family) -> tuple[Chain, Chain, tuple[Rule, ...], tuple[Rule, ...]]:
    fwd, inp, drop_e, drop_i = base_rules(settings, fam)
    return (Chain(naming.FORWARD_CHAIN, fwd), Chain(naming.INPUT_CHAIN, inp),
            _tail(settings, drop_e, "egress"), _tail(settings, drop_i, "ingress"))


def build_bundle(groups: frozenset[str], policies: list[CompiledPolicy], settings: CompileSettings,
                 families: tuple[Family, ...], prev: Bundle | None = None) -> Bundle:
    """``policies`` sorted by key.  When ``prev`` (built with the same
    settings and families) has the same policies with rules, its chains
    and set names are reused as they are: policies without rules (default
    deny) only change which pods are isolated."""
    ingress: set[str] = set()
    egress: set[str] = set()
    jumping: list[CompiledPolicy] = []
    for cp in policies:
        if cp.ingress:
            ingress.add(cp.target)
        if cp.egress:
            egress.add(cp.target)
        if cp.jumps:
            jumping.append(cp)
    jp = tuple(jumping)
    keys = tuple([cp.key for cp in policies])
    jump_groups = frozenset([cp.target for cp in jp])
    if prev is not None and len(prev.jump_policies) == len(jp) and \
            all(a is b for a, b in zip(prev.jump_policies, jp, strict=True)):
        return Bundle(groups, keys, prev.v4, prev.v6, prev.global_sets, frozenset(ingress), frozenset(egress),
                      jump_groups, jp)
    names: set[str] = set()
    # (family, policy chains, egress jump rules, ingress jump rules)
    per_fam: list[tuple[Family, dict[str, Chain], list[Rule], list[Rule]]] = [(fam, {}, [], []) for fam in families]
    for cp in jp:
        names.update(cp.set_names)
        for fam, chains, jumps_e, jumps_i in per_fam:
            fp = cp.families[fam]
            for c in fp.chains:
                chains[c.name] = c
            if fp.egress_jump is not None:
                jumps_e.append(fp.egress_jump)
            if fp.ingress_jump is not None:
                jumps_i.append(fp.ingress_jump)
    fams: dict[str, FamilyState] = {}
    for fam, chains, jumps_e, jumps_i in per_fam:
        fwd, inp, tail_e, tail_i = _base_chains(settings, fam)
        out = {fwd.name: fwd, inp.name: inp, **chains,
               naming.EGRESS_CHAIN: Chain(naming.EGRESS_CHAIN, (*jumps_e, *tail_e)),
               naming.INGRESS_CHAIN: Chain(naming.INGRESS_CHAIN, (*jumps_i, *tail_i))}
        fams[fam] = FamilyState(out, HOOKS)
    return Bundle(groups, keys, fams.get("inet", EMPTY_FAMILY), fams.get("inet6", EMPTY_FAMILY),
                  tuple(sorted(names)), frozenset(ingress), frozenset(egress), jump_groups, jp)
