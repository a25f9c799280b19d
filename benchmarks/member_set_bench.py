"""Member-change cost: frozenset copy vs ``stockade.member_set``: prints figures (no pass/fail).

For sets of 1k/3k/10k/30k members, a run of one-member changes (pods
coming and going: add a new address, remove an old one, alternately) is
applied the way the agent applies a delta, both ways:

* ``frozenset``: ``(cur - removed) | added`` (what ``stockade.state._changed``
  did before MemberSet: one copy of the set per change);
* ``MemberSet``: ``stockade.member_set.changed`` (overlays; a compaction
  every ~``overlay_limit`` changes is included in the mean).

and then what the agent's dataplane does with each new version against the
previous one (``new != old``, ``new - old``, ``old - new``: plan and
validation).  "cold": the CPU caches are flushed (a 64 MiB sweep, not
timed) before each timed change, as on a real agent where the set was
last touched one change ago; "warm": back to back.

    python benchmarks/member_set_bench.py [--changes 2000] [--sizes 1000,3000,10000,30000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    from stockade.member_set import changed
except ImportError:  # the code before MemberSet: the frozenset path only
    changed = None  # type: ignore[assignment]

_SWEEP = bytearray(64 << 20)


def flush_caches() -> None:
    _SWEEP[::64] = bytes(len(_SWEEP) // 64)


def ip(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def fs_changed(cur: frozenset[str], added: frozenset[str], removed: frozenset[str]) -> frozenset[str]:
    if not removed:
        return cur | added if added else cur
    if not added:
        return cur - removed
    return (cur - removed) | added


def run(n: int, changes: int, apply: Callable[..., object], cold: bool, seed: int = 1) -> dict[str, float]:
    rnd = random.Random(seed)
    members = [ip(i) for i in range(n)]
    cur: object = frozenset(members)
    live = list(members)
    nxt = n
    t_change: list[float] = []
    t_diff: list[float] = []
    for i in range(changes):
        if i % 2 == 0:
            added, removed = frozenset([ip(nxt)]), frozenset[str]()
            live.append(ip(nxt))
            nxt += 1
        else:
            k = rnd.randrange(len(live))
            live[k], live[-1] = live[-1], live[k]
            added, removed = frozenset[str](), frozenset([live.pop()])
        if cold:
            flush_caches()
        t0 = time.perf_counter()
        new = apply(cur, added, removed)
        t1 = time.perf_counter()
        if cold:
            flush_caches()
        t2 = time.perf_counter()
        assert new != cur
        plus, minus = new - cur, cur - new  # type: ignore[operator]
        t3 = time.perf_counter()
        assert plus == added and minus == removed, (i, plus, minus)
        t_change.append(t1 - t0)
        t_diff.append(t3 - t2)
        cur = new
    assert len(cur) == len(live)  # type: ignore[arg-type]
    t_change.sort()
    return {"mean": statistics.fmean(t_change), "median": statistics.median(t_change),
            "p99": t_change[int(len(t_change) * 0.99)], "max": t_change[-1], "diff": statistics.fmean(t_diff)}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--changes", type=int, default=2000)
    ap.add_argument("--sizes", default="1000,3000,10000,30000")
    a = ap.parse_args(argv)
    ways: list[tuple[str, Callable[..., object]]] = [("frozenset", fs_changed)]
    if changed is not None:
        ways.append(("MemberSet", changed))
    print(f"{a.changes} one-member changes per run; µs per change: mean (median / p99 / max); "
          "then the mean of new != old, new - old, old - new")
    for n in (int(x) for x in a.sizes.split(",")):
        for cold in (False, True):
            for name, fn in ways:
                r = run(n, a.changes, fn, cold)
                print(f"{n:6d} members {'cold' if cold else 'warm'} {name:9s}: change {r['mean'] * 1e6:7.2f} "
                      f"({r['median'] * 1e6:6.2f} / {r['p99'] * 1e6:7.2f} / {r['max'] * 1e6:7.1f}) µs;"
                      f"  diffs {r['diff'] * 1e6:7.2f} µs", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
