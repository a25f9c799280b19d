"""Parse ``ipset save`` and ``iptables-save`` output into the agent's view
of what it owns in the kernel.

Only our own objects are looked at: sets whose name starts with
``stockade.state.SET_PREFIX``, chains whose name starts with
``CHAIN_PREFIX``, and the rules in ``INPUT``/``FORWARD``/``OUTPUT`` that
jump to one of our chains (the hooks).  Every other line is skipped after
checking its first words; nobody else's rules or sets are interpreted.

A rule is identified by the hash tag the agent wrote into it
(``-m comment --comment "stk:<16 hex>"``, see ``restore_builder``), so
comparing a chain is comparing a tuple of tags; a rule without a tag (added
by hand) gets the tag ``""`` and so never matches.  Pure: text in, values out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from stockade.member_set import Members
from stockade.state import BUILTIN_CHAINS, CHAIN_PREFIX, SET_PREFIX, Family

TAG_RE = re.compile(r'-m comment --comment "stk:([0-9a-f]{16})"')
_JUMP_RE = re.compile(r" -j (" + re.escape(CHAIN_PREFIX) + r"\S+)$")


class ParseError(ValueError):
    """Save output we cannot understand (names the line)."""


@dataclass(frozen=True, slots=True)
class KSet:
    """One of our ipsets as the kernel holds it.  ``members``/``nomatch``
    in ipset's canonical text; ``counters``: member -> (packets, bytes) when
    the set has counters (else empty)."""

    name: str
    type: str
    family: str
    members: Members = frozenset()  # a MemberSet in the view expected after a write (see restore_builder)
    nomatch: Members = frozenset()
    has_counters: bool = False
    maxelem: int = 65536
    hashsize: int = 1024
    counters: Mapping[str, tuple[int, int]] = field(default_factory=dict, compare=False)

    def header(self) -> tuple[str, str, bool]:
        return (self.type, self.family, self.has_counters)


@dataclass(frozen=True, slots=True)
class KRule:
    """One rule of ours: its tag ("" when untagged) and the exact line
    iptables-save printed (``-A CHAIN ...``), packet/byte counters if read."""

    tag: str
    line: str = field(compare=False)
    packets: int = field(default=0, compare=False)
    bytes: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class KHook:
    """A rule in a built-in chain jumping to one of our chains.  ``index`` is
    its 0-based position among *all* rules of that built-in chain."""

    index: int
    target: str
    tag: str
    line: str = field(compare=False)


@dataclass(frozen=True, slots=True)
class KFamily:
    """Our chains (name -> rules in order) and hooks (built-in -> ours in
    order) for one family."""

    chains: Mapping[str, tuple[KRule, ...]] = field(default_factory=dict)
    hooks: Mapping[str, tuple[KHook, ...]] = field(default_factory=dict)

    def tags(self, chain: str) -> tuple[str, ...]:
        return tuple(r.tag for r in self.chains.get(chain, ()))


@dataclass(frozen=True, slots=True)
class KernelView:
    """Everything the agent owns, as read (or as believed after a write)."""

    sets: Mapping[str, KSet] = field(default_factory=dict)
    v4: KFamily = field(default_factory=KFamily)
    v6: KFamily = field(default_factory=KFamily)

    def family(self, family: Family) -> KFamily:
        return self.v4 if family == "inet" else self.v6

    def is_empty(self) -> bool:
        return not (self.sets or self.v4.chains or self.v6.chains
                    or any(self.v4.hooks.values()) or any(self.v6.hooks.values()))


class BlockCache:
    """Set name -> (its block of ``ipset save`` text, the KSet parsed from
    it) from the previous read: a set whose block is byte-for-byte the same
    (the usual case on a periodic re-read) is not parsed again."""

    def __init__(self) -> None:
        self.blocks: dict[str, tuple[str, KSet]] = {}


def parse_ipset_save(text: str, prefix: str = SET_PREFIX, cache: BlockCache | None = None) -> dict[str, KSet]:
    """Our sets from ``ipset save`` output (all sets, or one).

    ``ipset save`` prints each set as a ``create`` line followed by its
    ``add`` lines, so the text is cut into blocks per set; blocks of other
    tools' sets are skipped whole, plain members (no ``nomatch``, no
    counters) are taken by slicing, which keeps 50,000 members cheap, and
    with a ``cache`` unchanged blocks are not parsed at all."""
    out: dict[str, KSet] = {}
    seen: dict[str, tuple[str, KSet]] = {}
    if not text:
        if cache is not None:
            cache.blocks = seen
        return out
    blocks = text.split("\ncreate ")
    blocks[0] = blocks[0].removeprefix("create ")
    for bno, block in enumerate(blocks):
        name = block.split(" ", 1)[0]
        if not name.startswith(prefix) or not block.strip():
            continue
        if cache is not None:
            hit = cache.blocks.get(name)
            if hit is not None and hit[0] == block:
                out[name] = hit[1]
                seen[name] = hit
                continue
        lines = block.rstrip("\n").split("\n")
        header = lines[0].split(" ")
        if len(header) < 2:
            raise ParseError(f"ipset save: bad create line for {name!r}: {lines[0]!r}")
        opts = _options(header[2:])
        head = f"add {name} "
        cut = len(head)
        plain = [ln[cut:] for ln in lines[1:]]
        if any(not ln.startswith(head) for ln in lines[1:]):
            bad = next(ln for ln in lines[1:] if not ln.startswith(head))
            raise ParseError(f"ipset save (set {bno + 1}): unexpected line {bad!r}")
        members: set[str] | frozenset[str]
        nomatch: set[str] = set()
        counters: dict[str, tuple[int, int]] = {}
        if "counters" not in opts and not any(" " in m for m in plain):
            members = frozenset(plain)
        else:
            members = set()
            for m in plain:
                parts = m.split(" ")
                elem, rest = parts[0], parts[1:]
                if rest and rest[0] == "nomatch":
                    nomatch.add(elem)
                    rest = rest[1:]
                else:
                    members.add(elem)
                if len(rest) >= 4 and rest[0] == "packets" and rest[2] == "bytes":
                    counters[elem] = (int(rest[1]), int(rest[3]))
        out[name] = KSet(name, header[1], opts.get("family", "inet"), frozenset(members), frozenset(nomatch),
                         "counters" in opts, int(opts.get("maxelem", "65536")), int(opts.get("hashsize", "1024")),
                         counters)
        seen[name] = (block, out[name])
    if cache is not None:
        cache.blocks = seen
    return out


def _options(words: list[str]) -> dict[str, str]:
    flags = {"counters", "comment", "skbinfo", "forceadd"}
    opts: dict[str, str] = {}
    i = 0
    while i < len(words):
        w = words[i]
        if w in flags:
            opts[w] = ""
            i += 1
        else:
            opts[w] = words[i + 1] if i + 1 < len(words) else ""
            i += 2
    return opts


_COUNTER_RE = re.compile(r"^\[(\d+):(\d+)\] ")


def parse_iptables_save(text: str) -> KFamily:
    """Our chains and hooks from ``iptables-save -t filter [-c]`` output."""
    chains: dict[str, list[KRule]] = {}
    hooks: dict[str, list[KHook]] = {b: [] for b in BUILTIN_CHAINS}
    index: dict[str, int] = {b: 0 for b in BUILTIN_CHAINS}
    in_filter = False
    for no, raw in enumerate(text.splitlines(), 1):
        if not raw or raw[0] == "#":
            continue
        if raw[0] == "*":
            in_filter = raw == "*filter"
            continue
        if not in_filter:
            continue
        if raw[0] == ":":
            name = raw[1:].split(" ", 1)[0]
            if name.startswith(CHAIN_PREFIX):
                chains.setdefault(name, [])
            continue
        if raw == "COMMIT":
            continue
        pk = by = 0
        line = raw
        if raw[0] == "[":
            m = _COUNTER_RE.match(raw)
            if m is None:
                raise ParseError(f"iptables-save line {no}: bad counters: {raw!r}")
            pk, by = int(m.group(1)), int(m.group(2))
            line = raw[m.end():]
        if not line.startswith("-A "):
            continue
        chain = line[3:].split(" ", 1)[0]
        if chain.startswith(CHAIN_PREFIX):
            t = TAG_RE.search(line)
            if chain not in chains:
                raise ParseError(f"iptables-save line {no}: rule in undeclared chain {chain!r}")
            chains[chain].append(KRule(t.group(1) if t else "", line, pk, by))
        elif chain in hooks:
            j = _JUMP_RE.search(line)
            if j is not None:
                t = TAG_RE.search(line)
                hooks[chain].append(KHook(index[chain], j.group(1), t.group(1) if t else "", line))
            index[chain] += 1
    return KFamily({n: tuple(r) for n, r in chains.items()}, {b: tuple(h) for b, h in hooks.items()})
