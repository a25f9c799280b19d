"""Render our chains and hooks as ``iptables-restore --noflush`` input.

Each rule is written as ``-A CHAIN <-i/-o/-p> -m comment --comment
"stk:<tag>" <the rest of stockade.state.render_rule>``.  The tag is a hash
of the family, chain, previous rule's tag and the rule's arguments, so a
chain's tags identify its whole content in order (as in Calico's Felix):
reading back only needs the tags.  The tag sits right after the header
arguments because that is where ``iptables-save`` prints the first match,
on nft and legacy alike, so a rendered line equals the line read back.

Also here: the expected kernel view of a desired state (what
``kernel_read`` would return after a perfect apply) and the restore text of
one family's round (declare/flush chains, append rules, move hooks, delete
chains, one COMMIT).  Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from stockade.state import (
    BUILTIN_CHAINS,
    Chain,
    Family,
    FamilyState,
    Hook,
    IPSet,
    NodeState,
    Rule,
    SetMatch,
    render_rule,
)

from .ipset_render import size_of, sizing
from .kernel_read import KernelView, KFamily, KHook, KRule, KSet

_T = TypeVar("_T")
_SAFE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HEADER_OPTS = ("-i", "-o", "-p")


def quote(arg: str) -> str:
    """Quote a string value (comment, NFLOG prefix) exactly as iptables-save
    does (xtables_save_string): bare when it is only [A-Za-z0-9_-], else in
    double quotes with ``" \\ '`` escaped.  iptables-restore reads both.

    A control character cannot be quoted (a newline ends the restore line
    and the batch fails half-way): ``stockade.state_validation.validate`` refuses
    such values, so one here is a broken invariant and raises."""
    if arg and all(c in _SAFE for c in arg):
        return arg
    if any(c < " " or c == "\x7f" for c in arg):
        raise ValueError(f"restore value {arg[:80]!r} has a control character (validate() should have refused it)")
    return '"' + "".join("\\" + c if c in "\"\\'" else c for c in arg) + '"'


_STRING_OPTS = ("--comment", "--nflog-prefix")


def join_args(args: Sequence[str]) -> str:
    """Arguments as one restore line: string values quoted like
    iptables-save prints them, everything else bare."""
    out = []
    for i, a in enumerate(args):
        out.append(quote(a) if i and args[i - 1] in _STRING_OPTS else a)
    return " ".join(out)


def tag_of(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def _with_tag(args: Sequence[str], tag: str) -> list[str]:
    i = 0
    while i + 1 < len(args) and args[i] in _HEADER_OPTS:
        i += 2
    return [*args[:i], "-m", "comment", "--comment", f"stk:{tag}", *args[i:]]


def substitute(rule: Rule, sets: Mapping[str, str]) -> Rule:
    """``rule`` with set names replaced (shadow sets during a switch)."""
    if not sets or not any(sm.set in sets for sm in rule.sets):
        return rule
    return replace(rule, sets=tuple(SetMatch(sets.get(sm.set, sm.set), sm.dirs, sm.negate) for sm in rule.sets))


def chain_rules(family: Family, chain: Chain, sets: Mapping[str, str] | None = None) -> tuple[KRule, ...]:
    """The tagged ``-A`` lines of ``chain`` (set names substituted by ``sets``)."""
    out: list[KRule] = []
    prev = ""
    for r in chain.rules:
        args = render_rule(substitute(r, sets or {}))
        tag = tag_of(family, chain.name, prev, *args)
        out.append(KRule(tag, join_args(["-A", chain.name, *_with_tag(args, tag)])))
        prev = tag
    return tuple(out)


def ordered_hooks(fs: FamilyState) -> dict[str, tuple[Hook, ...]]:
    """Hooks per built-in chain, in the order they must appear at its top."""
    out: dict[str, list[Hook]] = {b: [] for b in BUILTIN_CHAINS}
    for h in sorted(fs.hooks, key=lambda h: h.position):  # stable: state order breaks ties
        out[h.builtin].append(h)
    return {b: tuple(hs) for b, hs in out.items()}


def hook_rules(family: Family, builtin: str, hooks: Sequence[Hook]) -> tuple[KHook, ...]:
    out = []
    for i, h in enumerate(hooks):
        tag = tag_of(family, builtin, str(i), h.target)
        line = f"-A {builtin} -m comment --comment {quote('stk:' + tag)} -j {h.target}"
        out.append(KHook(i, h.target, tag, line))
    return tuple(out)


class RenderCache:
    """Rendered chains and expected sets keyed by object identity: states
    change a few sets/chains at a time and share the unchanged objects, so
    only what is new gets rendered again.  Holds the objects of the last
    two states only."""

    def __init__(self) -> None:
        self._live: dict[int, tuple[object, object]] = {}
        self._prev: dict[int, tuple[object, object]] = {}

    def get(self, key: object, make: Callable[[], _T]) -> _T:
        k = id(key)
        hit = self._live.get(k) or self._prev.get(k)
        if hit is None or hit[0] is not key:
            hit = (key, make())
        self._live[k] = hit
        return hit[1]  # type: ignore[return-value]

    def rotate(self) -> None:
        self._prev, self._live = self._live, {}


def expected_family(family: Family, fs: FamilyState, cache: RenderCache | None = None) -> KFamily:
    c = cache or RenderCache()
    return KFamily({n: c.get(ch, lambda ch=ch: chain_rules(family, ch)) for n, ch in fs.chains.items()},  # type: ignore[misc]
                   {b: hook_rules(family, b, hs) for b, hs in ordered_hooks(fs).items()})


def _kset(s: IPSet) -> KSet:
    hashsize, maxelem = sizing(size_of(s))
    return KSet(s.name, s.type, s.family, s.members, s.nomatch, s.counters, maxelem, hashsize)


def expected_view(state: NodeState, cache: RenderCache | None = None) -> KernelView:
    """What ``kernel_read`` returns once ``state`` is applied exactly."""
    c = cache or RenderCache()
    sets = {n: c.get(s, lambda s=s: _kset(s)) for n, s in state.sets.items()}  # type: ignore[misc]
    view = KernelView(sets, expected_family("inet", state.v4, c), expected_family("inet6", state.v6, c))
    if cache is not None:
        cache.rotate()
    return view


@dataclass(frozen=True, slots=True)
class FamilyWrite:
    """One family's iptables round.

    ``chains``: chains to (re)write, with their rendered rules;
    ``delete``: our chains to remove; ``hooks_delete``: exact lines of our
    hook rules to remove (as read); ``hooks_insert``: built-in -> hook rules
    to insert at its top, in order."""

    chains: Mapping[str, tuple[KRule, ...]]
    delete: tuple[str, ...] = ()
    hooks_delete: tuple[str, ...] = ()
    hooks_insert: Mapping[str, tuple[KHook, ...]] | None = None

    def is_empty(self) -> bool:
        return not (self.chains or self.delete or self.hooks_delete or self.hooks_insert)


def iptables_restore_text(w: FamilyWrite) -> str:
    """One COMMIT for the whole round: atomic in the kernel.

    Order inside: declare (create or flush) every chain written or deleted;
    append the rules of written chains; remove then insert hook rules; delete
    chains nothing references any more."""
    lines = ["*filter"]
    lines += [f":{n} - [0:0]" for n in (*sorted(w.chains), *w.delete)]
    for n in sorted(w.chains):
        lines += [r.line for r in w.chains[n]]
    lines += ["-D" + ln[2:] for ln in w.hooks_delete]
    for b, hs in (w.hooks_insert or {}).items():
        lines += [f"-I {b} {i + 1}" + h.line[2 + len(b) + 1:] for i, h in enumerate(hs)]
    lines += [f"-X {n}" for n in w.delete]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"
