"""Soak: steady policy and label churn for N minutes; do the processes stay flat?

In the fault tests' lab (``tests/faults/faultlab.py``: 2 nodes, 5 pods, the
real emulator, controller and two agents, bridged), a steady churn of
random policy and label changes (``tests/faults/churn.py``, which never
opens the forbidden pairs) is written, ``--rate`` changes per second in
batches of ``--batch``, each batch's enforcement awaited through the agents'
acknowledgements.  A prober watches the forbidden pairs all the time.

Every ``--interval`` seconds (60) it prints, per process (emulator,
controller, agent node-0, agent node-1), the RSS (``VmRSS`` of
``/proc/PID/status``) and the number of open file descriptors
(``/proc/PID/fd``).  At the end a summary compares the first sample after
the warm-up minute with the last one and fits a slope, and says whether
each stayed flat:

* RSS flat: grew by at most ``max(8 MiB, 10 %)`` from the first to the last
  sample, and the slope fitted to the second half of the samples,
  extrapolated over the whole run, stays under 2 MiB (sustained growth, not
  the early filling of caches and the emulator's bounded history window;
  on a 30-minute run that is under ~70 KiB per minute);
* descriptors flat: the last sample is within 8 of the first.

Exit status 0 when everything stayed flat, no forbidden connection got
through and the final state is exact on every node (``verify.exact``);
1 otherwise.  Run on demand, not in CI (root, network namespaces):

    sudo python benchmarks/soak.py [--minutes 30] [--rate 20] [--interval 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.faults.churn import changes
from tests.faults.faultlab import ALLOWED, FORBIDDEN, FaultLab, open_lab
from tests.faults.inject import write_retrying
from tests.faults.verify import exact, open_fds, rss_kib
from tests.faults.watch import watching

MIB = 1024


def processes(fl: FaultLab) -> dict[str, int]:
    pipe = fl.pipe
    out: dict[str, int] = {}
    if pipe.emulator is not None:
        out["emulator"] = pipe.emulator.pid
    if pipe.controller is not None:
        out["controller"] = pipe.controller.pid
    for i, lp in sorted(pipe.agents.items()):
        out[f"agent-{i}"] = lp.pid
    return out


def sample(fl: FaultLab) -> dict[str, tuple[int, int]]:
    return {name: (rss_kib(pid), open_fds(pid)) for name, pid in processes(fl).items()}


def slope_kib_per_min(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (minutes, KiB)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def summarize(rows: list[tuple[float, dict[str, tuple[int, int]]]]) -> tuple[bool, list[str]]:
    """(all flat, lines); ``rows`` = (minutes since start, sample), the
    first one taken after the warm-up."""
    lines = []
    flat = True
    for name in rows[0][1]:
        rss = [(t, s[name][0]) for t, s in rows if name in s]
        fds = [s[name][1] for _, s in rows if name in s]
        first, last = rss[0][1], rss[-1][1]
        slope = slope_kib_per_min(rss[len(rss) // 2:])  # the second half: sustained growth, not warm-up
        span = max(1.0, rss[-1][0] - rss[0][0])
        rss_ok = last - first <= max(8 * MIB, first // 10) and slope * span <= 2 * MIB
        fd_ok = abs(fds[-1] - fds[0]) <= 8
        flat &= rss_ok and fd_ok
        lines.append(f"  {name:<11} RSS {first / MIB:7.1f} -> {last / MIB:7.1f} MiB "
                     f"(max {max(v for _, v in rss) / MIB:.1f}, 2nd-half slope {slope:+.0f} KiB/min) "
                     f"{'flat' if rss_ok else 'GROWING'};  fds {fds[0]} -> {fds[-1]} "
                     f"(max {max(fds)}) {'flat' if fd_ok else 'GROWING'}")
    return flat, lines


def show(t: float, s: dict[str, tuple[int, int]], changes_done: int, extra: str = "") -> None:
    parts = "  ".join(f"{n} {r / MIB:.1f}MiB/{f}fd" for n, (r, f) in s.items())
    print(f"[{t:6.1f} min] changes {changes_done:6d}  {parts}{extra}", flush=True)


async def soak(args: argparse.Namespace) -> int:
    async with open_lab() as fl:
        pipe = fl.pipe
        t0 = time.monotonic()
        done = 0
        seed = 1000
        rows: list[tuple[float, dict[str, tuple[int, int]]]] = []
        converge: list[float] = []
        async with watching(fl.run.lab, FORBIDDEN, ALLOWED[:1]) as w:
            next_sample = t0 + min(args.interval, 60.0)  # the first sample ends the warm-up
            end = t0 + args.minutes * 60
            show(0.0, sample(fl), 0, "  (start)")
            while time.monotonic() < end:
                tb = time.monotonic()
                seed += 1
                seen, _ = await write_retrying(pipe, changes(fl, args.batch, seed), concurrency=4)
                await pipe.wait_converged(seen, timeout=60)
                converge.append(time.monotonic() - tb)
                done += args.batch
                now = time.monotonic()
                if now >= next_sample:
                    s = sample(fl)
                    rows.append(((now - t0) / 60, s))
                    show((now - t0) / 60, s, done, f"  forbidden let through {w.forbidden_allowed}")
                    next_sample += args.interval
                await asyncio.sleep(max(0.0, args.batch / args.rate - (time.monotonic() - tb)))
            digests = await exact(pipe)
        s = sample(fl)
        rows.append(((time.monotonic() - t0) / 60, s))
        show(rows[-1][0], s, done, "  (end)")
        flat, lines = summarize(rows) if len(rows) >= 2 else (False, ["  too short: fewer than 2 samples"])
        converge.sort()
        p50 = converge[len(converge) // 2] if converge else 0.0
        p99 = converge[min(len(converge) - 1, int(len(converge) * 0.99))] if converge else 0.0
        print(f"\nsoak summary: {args.minutes:g} min, {done} changes ({done / max(1e-9, (time.monotonic() - t0)):.1f}/s), "
              f"batch write+enforce p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
        print(f"  prober: {w.summary()}")
        print(f"  final state exact on every node: {', '.join(f'{k} {v[:12]}' for k, v in digests.items())}")
        print("\n".join(lines))
        ok = flat and w.forbidden_allowed == 0
        print(f"verdict: {'FLAT' if flat else 'NOT FLAT'}; forbidden connections {w.forbidden_allowed}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"minutes": args.minutes, "changes": done, "forbidden_allowed": w.forbidden_allowed,
                           "forbidden_probes": w.forbidden_tries, "p50_s": p50, "p99_s": p99, "flat": flat,
                           "samples": [{"minute": round(t, 2), **{k: {"rss_kib": v[0], "fds": v[1]}
                                                                  for k, v in s.items()}} for t, s in rows]},
                          f, indent=1)
        return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="how long to churn (default 30)")
    ap.add_argument("--rate", type=float, default=20.0, help="changes per second (default 20)")
    ap.add_argument("--batch", type=int, default=10, help="changes written per batch (default 10)")
    ap.add_argument("--interval", type=float, default=60.0, help="seconds between samples (default 60)")
    ap.add_argument("--json", default="", help="also write the samples to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("soak: needs root (network namespaces)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(soak(args))
    except KeyboardInterrupt:
        print("soak: interrupted; lab torn down", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
