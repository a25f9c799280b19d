"""Diff a desired :class:`~stockade.state.NodeState` against the kernel's
view of what we own, and decide the safe order of the writes.

The plan is computed against the kernel as read (or as believed after the
last successful write), never against the previous desired state, so the
same code adopts a kernel left by an earlier agent, repairs drift, and
applies a new state.

Safety: at no moment may a selected pod be less protected than under both
the old and the new state.  Each ``iptables-restore`` COMMIT is atomic; an
``ipset restore`` is not, and set contents and rules cannot change in one
kernel transaction.  So:

* new sets are created first (nothing references them yet);
* a round that changes only set members writes them in place: every
  removal (in all sets) before every addition, big changes and resizes
  through a temporary set and one atomic ``swap`` in between.  For the
  NetworkPolicy structure (allowed = not isolated, or some policy selecting
  the destination lists the source) every intermediate state is then
  allowed by the old or the new state, unless one address leaves a set and
  joins another in the same round (a pod moving between policies);
* such a round, and a round that changes rules *and* the content or header
  of sets that desired rules reference, goes through an **atomic switch**: the new
  content is built in shadow sets, one COMMIT moves every rule that uses
  those sets to the new rules + shadows (old state -> new state in one
  step), the real sets are then updated while nothing uses them, a second
  COMMIT moves the rules back to the real names (same meaning), and the
  shadows are destroyed;
* chains, hooks and sets that nothing wants any more go last.

Pure: no I/O.  ``dataplane`` runs the phases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from stockade.state import FAMILIES, Family, NodeState, SetMembersDelta

from . import ipset_render as ir
from .kernel_read import KernelView, KSet
from .restore_builder import FamilyWrite, RenderCache, chain_rules, expected_view

SMALL_CHANGE = 1000  # member changes above this (and above half the set) go through temp + swap


@dataclass(frozen=True, slots=True)
class Plan:
    """What to write, by phase.

    ``create``: sets not in the kernel.  ``members``: in-place member
    changes.  ``replace``: set name -> temporary name (content replaced by
    swap).  ``switch``: set name -> shadow name (atomic switch);
    ``switch_fill``: how each switched set is brought to its new content
    while unused (its member change, or None: destroyed and created again).
    ``recreate``: sets whose header differs (always switched).  ``destroy``: our sets nobody wants.  ``writes`` /
    ``writes_back``: per family, the first and (switch only) second
    iptables round."""

    create: tuple[str, ...] = ()
    members: tuple[SetMembersDelta, ...] = ()
    replace: Mapping[str, str] = field(default_factory=dict)
    switch: Mapping[str, str] = field(default_factory=dict)
    switch_fill: Mapping[str, SetMembersDelta | None] = field(default_factory=dict)
    recreate: tuple[str, ...] = ()
    destroy: tuple[str, ...] = ()
    writes: Mapping[Family, FamilyWrite] = field(default_factory=dict)
    writes_back: Mapping[Family, FamilyWrite] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.create or self.members or self.replace or self.switch or self.destroy
                    or any(not w.is_empty() for w in self.writes.values()))

    def iptables_changes(self) -> bool:
        return any(not w.is_empty() for w in self.writes.values())

    def summary(self) -> dict[str, int]:
        return {
            "sets_created": len(self.create),
            "sets_member_changes": sum(m.size() for m in self.members),
            "sets_replaced": len(self.replace),
            "sets_switched": len(self.switch),
            "sets_destroyed": len(self.destroy),
            "chains_written": sum(len(w.chains) for w in self.writes.values()),
            "chains_deleted": sum(len(w.delete) for w in self.writes.values()),
            "hooks_moved": sum(len(w.hooks_insert or {}) for w in self.writes.values()),
        }


def _set_changes(want: KSet, have: KSet) -> SetMembersDelta:
    return SetMembersDelta(want.name, want.members - have.members, have.members - want.members,
                        want.nomatch - have.nomatch, have.nomatch - want.nomatch)


def make_plan(desired: NodeState, actual: KernelView, cache: RenderCache | None = None) -> Plan:
    """The writes that turn ``actual`` into ``desired`` (see module doc).
    ``cache`` reuses renders of unchanged chains between calls."""
    want = expected_view(desired, cache)
    taken: set[str] = set(actual.sets) | set(desired.sets)
    create: list[str] = []
    members: list[SetMembersDelta] = []
    replace: dict[str, str] = {}
    recreate: list[str] = []
    removed_ips: set[str] = set()
    added_ips: set[str] = set()
    nets_changed = False
    for name in sorted(want.sets):
        w, h = want.sets[name], actual.sets.get(name)
        if h is None:
            create.append(name)
        elif w.header() != h.header():
            recreate.append(name)
        elif (w.members is not h.members and w.members != h.members) or w.nomatch != h.nomatch \
                or ir.too_small(h.maxelem, ir.size_of(desired.sets[name])):
            mc = _set_changes(w, h)
            # an except block added shrinks the set, one removed grows it
            removed_ips.update(m.split(",", 1)[0] for m in (*mc.removed, *mc.nomatch_added))
            added_ips.update(m.split(",", 1)[0] for m in (*mc.added, *mc.nomatch_removed))
            nets_changed |= w.type == "hash:net"
            n = ir.size_of(desired.sets[name])
            if ir.too_small(h.maxelem, n) or (mc.size() > SMALL_CHANGE and mc.size() > n // 2):
                replace[name] = ir.temp_name(name, "t", taken)
                taken.add(replace[name])
            else:
                members.append(mc)
    # Which iptables chains / hooks differ?
    fam_chains: dict[Family, set[str]] = {}
    fam_delete: dict[Family, tuple[str, ...]] = {}
    fam_hooks: dict[Family, list[str]] = {}
    for fam in FAMILIES:
        wf, hf = want.family(fam), actual.family(fam)
        fam_chains[fam] = {n for n, rules in wf.chains.items()
                           if rules is not hf.chains.get(n) and (n not in hf.chains or wf.tags(n) != hf.tags(n))}
        fam_delete[fam] = tuple(sorted(n for n in hf.chains if n not in wf.chains))
        fam_hooks[fam] = [b for b in wf.hooks if tuple(wf.hooks[b]) != tuple(hf.hooks.get(b, ()))]
        # hooks read in chains we do not want at all are also stale
        fam_hooks[fam] += [b for b in hf.hooks if b not in wf.hooks and hf.hooks[b]]
    rules_change = any(fam_chains[f] or fam_delete[f] or fam_hooks[f] for f in FAMILIES)
    # The atomic switch: content changes of sets used by desired rules, in a
    # round that also changes rules; header changes always.
    # Member changes alone are safe in place when every removal can come
    # before every addition: unless one address leaves a set and joins
    # another (a pod moving between policies), or CIDR blocks change while
    # both directions happen (overlaps are not tracked).
    conflict = bool(removed_ips & added_ips) or (nets_changed and bool(removed_ips) and bool(added_ips))
    switch_names = set(recreate)
    if (rules_change or conflict) and (members or replace):
        used = {sm.set for f in FAMILIES for c in desired.family(f).chains.values() for r in c.rules for sm in r.sets}
        switch_names |= {m.name for m in members if m.name in used} | {n for n in replace if n in used}
    switch: dict[str, str] = {}
    switch_fill: dict[str, SetMembersDelta | None] = {}
    by_name = {m.name: m for m in members}
    for name in sorted(switch_names):
        switch[name] = ir.temp_name(name, "s", taken)
        taken.add(switch[name])
        switch_fill[name] = by_name.get(name)  # None: destroy and create again (header, size, big change)
    members = [m for m in members if m.name not in switch]
    replace = {n: t for n, t in replace.items() if n not in switch}
    writes: dict[Family, FamilyWrite] = {}
    writes_back: dict[Family, FamilyWrite] = {}
    for fam in FAMILIES:
        fs, wf, hf = desired.family(fam), want.family(fam), actual.family(fam)
        via_shadow = {n for n, c in fs.chains.items() if any(sm.set in switch for r in c.rules for sm in r.sets)}
        chains = {n: (chain_rules(fam, fs.chains[n], switch) if n in via_shadow else wf.chains[n])
                  for n in fam_chains[fam] | via_shadow}
        hooks_delete = tuple(h.line for b in fam_hooks[fam] for h in hf.hooks.get(b, ()))
        hooks_insert = {b: wf.hooks[b] for b in fam_hooks[fam] if wf.hooks.get(b)}
        writes[fam] = FamilyWrite(chains, fam_delete[fam], hooks_delete, hooks_insert or None)
        if via_shadow:
            writes_back[fam] = FamilyWrite({n: wf.chains[n] for n in via_shadow})
    destroy = tuple(sorted(n for n in actual.sets if n not in desired.sets))
    return Plan(tuple(create), tuple(members), replace, switch, switch_fill, tuple(recreate), destroy, writes, writes_back)


def ipset_phase1(desired: NodeState, plan: Plan) -> list[str]:
    """New sets, shadows, in-place member changes, swaps."""
    lines: list[str] = []
    for name in plan.create:
        lines += ir.full_lines(desired.sets[name])
    for name, shadow in plan.switch.items():
        lines += ir.full_lines(desired.sets[name], shadow)
    # Every removal before every addition (shrinking first; see make_plan
    # for when that is not enough); a swap changes one set at one instant.
    for mc in plan.members:
        lines += ir.del_lines(mc.name, mc.removed)
        lines += ir.add_lines(mc.name, (), mc.nomatch_added)
    for name, temp in plan.replace.items():
        lines += ir.replace_lines(desired.sets[name], temp)
    for mc in plan.members:
        lines += ir.del_lines(mc.name, (), mc.nomatch_removed)
        lines += ir.add_lines(mc.name, mc.added)
    return lines


def ipset_phase3(desired: NodeState, plan: Plan) -> list[str]:
    """While no rule uses them: bring the switched sets to their new content."""
    lines: list[str] = []
    for name, fill in plan.switch_fill.items():
        # Not "swap": rules follow a set's index through a swap, so rules on
        # the shadow would see the old content until the second COMMIT.
        if fill is None:
            lines += [f"destroy {name}", *ir.full_lines(desired.sets[name])]
        else:
            lines += ir.del_lines(name, fill.removed, fill.nomatch_removed)
            lines += ir.add_lines(name, fill.added, fill.nomatch_added)
    return lines


def ipset_phase5(plan: Plan) -> list[str]:
    """Last: the shadows and every set of ours nobody wants."""
    return [f"destroy {n}" for n in (*plan.switch.values(), *plan.destroy)]
