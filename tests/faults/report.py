"""Figures of a fault run: printed, and appended as one JSON line to the
file named by ``STOCKADE_FAULTS_REPORT`` when set (``benchmarks/
faults_report.py`` runs the suite with it and prints a table)."""

from __future__ import annotations

import json
import os
import time
from typing import Any


def report(fault: str, **figures: Any) -> None:
    row = {"fault": fault, "unix": round(time.time(), 1), **figures}
    line = json.dumps(row, sort_keys=True, default=str)
    print(f"FAULT-REPORT {line}")
    path = os.environ.get("STOCKADE_FAULTS_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
