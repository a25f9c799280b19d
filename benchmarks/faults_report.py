"""Run the fault-injection suite (``tests/faults``) and print its figures as a table.

Each fault test appends one JSON line of figures (``tests/faults/report.py``)
to the file named by ``STOCKADE_FAULTS_REPORT``; this script points that at
a temporary file, runs pytest, and prints one row per fault: time to
converge, forbidden probes sent and let through, allowed probes dropped,
and the rest of the figures.  Exit status: pytest's.  Root needed.

    sudo python benchmarks/faults_report.py [-k EXPR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = ("converge_seconds", "converge_after_last_write_seconds", "converge_after_clear_seconds",
        "forbidden_probes", "forbidden_allowed", "allowed_dropped")


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'fault':<40} {'converge s':>10} {'forbidden probes':>16} {'let through':>11} {'allowed dropped':>15}"
    out = [head, "-" * len(head)]
    for r in rows:
        conv = next((r[k] for k in MAIN[:3] if k in r), "")
        out.append(f"{r['fault']:<40} {conv!s:>10} {r.get('forbidden_probes', '')!s:>16} "
                   f"{r.get('forbidden_allowed', '')!s:>11} {r.get('allowed_dropped', '')!s:>15}")
        rest = {k: v for k, v in r.items() if k not in (*MAIN, "fault", "unix")}
        out.append("    " + json.dumps(rest, sort_keys=True))
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default="", help="pytest -k expression")
    ap.add_argument("--json", default="", help="also write the rows to this file")
    args = ap.parse_args()
    fd, path = tempfile.mkstemp(prefix="stockade-faults-", suffix=".jsonl")
    os.close(fd)
    try:
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/faults"]
        if args.k:
            cmd += ["-k", args.k]
        rc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "STOCKADE_FAULTS_REPORT": path}).returncode
        with open(path) as f:
            rows = [json.loads(line) for line in f if line.strip()]
    finally:
        os.unlink(path)
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main())
