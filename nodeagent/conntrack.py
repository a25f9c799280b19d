"""Cut established connections a tightened policy no longer allows.

Our chains let established traffic through first (``ctstate ESTABLISHED
RETURN``), so a connection opened under an older, looser state would
survive a tightening.  After each successful apply the agent deletes the
conntrack entries of the pods whose protection may have shrunk (kube-router
leaves them alone); the next packet of such a flow is then judged by the
new rules, like a new one.

Which addresses (``affected``, pure; conservative rather than precise):

* members removed from any set (a peer lost its allowance, or a pod left a
  policy's selection);
* members added to a set that a JUMP rule matches (a pod newly selected by a
  policy: it became isolated);
* all members (old and new) of the sets matched by JUMP rules that lead to a
  chain whose rules changed, appeared or disappeared, or that were added or
  removed themselves (the pods of a policy whose rules changed).

Only single addresses are cut (``hash:ip`` members and the address of
``hash:ip,port`` members); a removed ``hash:net`` block is not expanded.
``cut`` lists the table once and runs ``conntrack -D -s IP`` and ``-D -d
IP`` for the affected addresses that have entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from stockade.state import FAMILIES, Chain, Family, IPSet, NodeState, Rule

from .kernel import Kernel
from .restore_builder import RenderCache

MAX_PARALLEL = 4


def _ips(s: IPSet | None, members: Iterable[str]) -> set[str]:
    if s is None or s.type == "hash:net":
        return set()
    return {m.split(",", 1)[0] for m in members}


_JUMPS = RenderCache()


def _chain_jumps(c: Chain) -> tuple[tuple[str, frozenset[str], Rule], ...]:
    """(target, positive sets, rule) of each JUMP rule of ``c``, cached by identity."""
    return _JUMPS.get(c, lambda: tuple((r.target, frozenset(sm.set for sm in r.sets if not sm.negate), r)
                                       for r in c.rules if r.action == "JUMP"))


def _jump_sets(state: NodeState, family: Family) -> dict[str, set[str]]:
    """target chain -> names of sets matched by rules jumping to it."""
    out: dict[str, set[str]] = {}
    for c in state.family(family).chains.values():
        for target, sets, _r in _chain_jumps(c):
            out.setdefault(target, set()).update(sets)
    return out


def _jump_rules(state: NodeState, family: Family) -> set[tuple[str, Rule]]:
    return {(c.name, r) for c in state.family(family).chains.values() for _t, _s, r in _chain_jumps(c)}


def affected(old: NodeState | None, new: NodeState) -> dict[Family, set[str]]:
    """Addresses whose established connections must be cut, per family."""
    out: dict[Family, set[str]] = {f: set() for f in FAMILIES}
    if old is None:
        return out  # adoption: nothing was allowed by us that the kernel did not already hold

    def add(name: str, members: Iterable[str]) -> None:
        s = new.sets.get(name) or old.sets.get(name)
        if s is not None:
            out[s.family] |= _ips(s, members)

    for name, o in old.sets.items():
        n = new.sets.get(name)
        if n is o:
            continue
        add(name, o.members - (n.members if n is not None and n.header() == o.header() else frozenset()))
    for fam in FAMILIES:
        oj, nj = _jump_sets(old, fam), _jump_sets(new, fam)
        for name in set().union(*nj.values()) if nj else set():
            was, now = old.sets.get(name), new.sets.get(name)
            if now is not None and now is not was:
                add(name, now.members - (was.members if was is not None else frozenset()))
        ofs, nfs = old.family(fam), new.family(fam)
        changed = {c for c in set(ofs.chains) | set(nfs.chains)
                   if ofs.chains.get(c) is not nfs.chains.get(c) and ofs.chains.get(c) != nfs.chains.get(c)}
        for c in changed:
            for name in oj.get(c, set()) | nj.get(c, set()):
                for st in (old, new):
                    s = st.sets.get(name)
                    if s is not None:
                        out[s.family] |= _ips(s, s.members)
        for _chain, r in (_jump_rules(old, fam) ^ _jump_rules(new, fam)) if changed else ():
            for sm in r.sets:
                for st in (old, new):
                    s = st.sets.get(sm.set)
                    if s is not None and not sm.negate:
                        out[s.family] |= _ips(s, s.members)
    _JUMPS.rotate()
    return out


def _orig_addresses(listing: str) -> set[str]:
    """Original-direction src/dst of every entry in ``conntrack -L`` output."""
    out: set[str] = set()
    for line in listing.splitlines():
        src = line.find(" src=")
        dst = line.find(" dst=")
        if src >= 0:
            out.add(line[src + 5:line.find(" ", src + 5)])
        if dst >= 0:
            out.add(line[dst + 5:line.find(" ", dst + 5)])
    return out


async def cut(kernel: Kernel, ips: dict[Family, set[str]], timeout: float = 5.0) -> tuple[int, list[str]]:
    """Delete the conntrack entries from and to each address.  One
    ``conntrack -L`` per family first (each ``conntrack -D`` dumps the whole
    table, some 20 ms), then ``-D -s``/``-D -d`` only for the addresses that
    have entries.  Returns (delete commands run, errors).  "0 flow entries"
    (exit 1) is not an error."""
    sem = asyncio.Semaphore(MAX_PARALLEL)
    errors: list[str] = []
    runs = 0

    async def one(fam: Family, flag: str, ip: str) -> None:
        nonlocal runs
        async with sem:
            res = await kernel.run(["conntrack", "-D", "-f", "ipv4" if fam == "inet" else "ipv6", flag, ip],
                                   timeout=timeout)
            runs += 1
            if res.rc != 0 and "0 flow entries" not in res.stderr + res.stdout:
                errors.append(res.describe())

    jobs = []
    for fam, want in ips.items():
        if not want:
            continue
        res = await kernel.run(["conntrack", "-L", "-f", "ipv4" if fam == "inet" else "ipv6"], timeout=timeout)
        present = _orig_addresses(res.stdout) if res.ok else set(want)  # cannot list: cut them all
        jobs += [one(fam, flag, ip) for ip in sorted(want & present) for flag in ("-s", "-d")]
    await asyncio.gather(*jobs)
    return runs, errors
