"""Run every fuzz target (tests/fuzz/targets.py) for a time budget and report.

Usage::

    python benchmarks/fuzz_run.py                      # 60 s per target
    python benchmarks/fuzz_run.py --seconds 10 --target parse-tree --target agent-garbage
    python benchmarks/fuzz_run.py --seconds 300 --seed 7 --json fuzz.json

Each target is driven by hypothesis in batches of random (seeded: batch
``i`` of a run uses seed ``--seed + i``, so a run is reproducible) examples
until its budget is spent.  A failing example is shrunk by hypothesis,
recorded as a crash (distinct crashes are told apart by exception type and
message, numbers blanked), and fuzzing goes on with the next batch.
Printed per target: executions (calls of the target's check, shrinking
included), distinct crashes, the slowest single input, and the minimal
example of each crash.  Exit status 1 when any target crashed.

The short, derandomized form of the same targets runs in CI:
``pytest -q tests/fuzz/test_fuzz.py``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis.reporting import with_reporter  # noqa: E402

from tests.fuzz.targets import TARGETS, Target  # noqa: E402


@dataclass
class Crash:
    signature: str
    example: str
    count: int = 1


@dataclass
class Outcome:
    target: str
    seconds: float = 0.0
    executions: int = 0
    batches: int = 0
    slowest: float = 0.0
    crashes: dict[str, Crash] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"target": self.target, "seconds": round(self.seconds, 1), "executions": self.executions,
                "batches": self.batches, "slowest_input_ms": round(self.slowest * 1000, 1),
                "crashes": [{"signature": c.signature, "times": c.count, "example": c.example}
                            for c in self.crashes.values()]}


def _signature(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {re.sub(r'[0-9]+', 'N', first)[:160]}"


def _leaves(e: BaseException) -> list[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        return [x for sub in e.exceptions for x in _leaves(sub)]
    return [e]


def fuzz(target: Target, budget: float, base_seed: int, batch: int) -> Outcome:
    out = Outcome(target.name)
    target.runs, target.slowest = 0, 0.0
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < budget:
        lines: list[str] = []

        @seed(base_seed + i)
        @settings(max_examples=batch, database=None, deadline=None, derandomize=False, print_blob=False,
                  suppress_health_check=list(HealthCheck), phases=(Phase.generate, Phase.shrink),
                  report_multiple_bugs=True)
        @given(target.strategy)
        def run(example: Any) -> None:
            target.run(example)

        try:
            with with_reporter(lambda text: lines.append(str(text))):  # noqa: B023  used at once
                run()
        except Exception as e:  # every failure is a finding to record, then go on
            for leaf in _leaves(e):
                sig = _signature(leaf)
                if sig in out.crashes:
                    out.crashes[sig].count += 1
                else:  # hypothesis attaches the minimal example to the exception as notes
                    notes = "\n".join([*lines, *getattr(leaf, "__notes__", [])])
                    out.crashes[sig] = Crash(sig, notes[:3000])
        i += 1
    out.seconds = time.monotonic() - t0
    out.executions, out.slowest, out.batches = target.runs, target.slowest, i
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run every fuzz target for a bounded time and report.")
    ap.add_argument("--seconds", type=float, default=60.0, help="time budget per target (default 60)")
    ap.add_argument("--target", action="append", choices=sorted(TARGETS), help="only these targets (repeatable)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first batch (default 0)")
    ap.add_argument("--batch", type=int, default=100, help="examples per hypothesis run (default 100)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    names = args.target or sorted(TARGETS)
    results: list[Outcome] = []
    print(f"{'target':<15} {'seconds':>8} {'executions':>11} {'exec/s':>8} {'crashes':>8} {'slowest input':>14}")
    for name in names:
        r = fuzz(TARGETS[name], args.seconds, args.seed, args.batch)
        results.append(r)
        rate = r.executions / r.seconds if r.seconds else 0.0
        print(f"{name:<15} {r.seconds:>8.1f} {r.executions:>11} {rate:>8.0f} {len(r.crashes):>8} "
              f"{r.slowest * 1000:>11.1f} ms", flush=True)
    for r in results:
        for c in r.crashes.values():
            print(f"\n== {r.target}: {c.signature} (x{c.count})\n{c.example}")
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds_per_target": args.seconds, "seed": args.seed,
                                               "results": [r.as_json() for r in results]}, indent=1) + "\n")
    return 1 if any(r.crashes for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
