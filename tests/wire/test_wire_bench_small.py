"""``benchmarks/wire_bench.py`` end to end, small: emulator, controller and
agent workers as real processes; the run exits 0 and prints plausible
figures.  No timing assertions: the targets live in the benchmark, not here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--nodes", "50", "--pods", "1500", "--policies", "150", "--namespaces", "10", "--changes", "20",
         "--workers", "2", "--first-sync-timeout", "60", "--change-timeout", "20"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_small_end_to_end_run_prints_plausible_figures() -> None:
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "wire_bench.py"), *SMALL], cwd=ROOT,
                       capture_output=True, text=True, timeout=110)
    assert p.returncode == 0, f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
    lines = p.stdout.splitlines()
    keys = {ln.split()[0] for ln in lines if ln.strip() and not ln.startswith("JSON ")}
    data = json.loads(next(ln for ln in lines if ln.startswith("JSON "))[5:])
    for key in ("first_sync_all_acked_seconds", "controller_ready_seconds", "write_to_last_ack_ms",
                "write_to_last_ack_ms_by_kind", "change_affected_nodes", "change_bytes_mean",
                "delta_vs_snapshot_bytes_pct_single_pod", "controller_rss_mb", "controller_cpu_seconds_total",
                "emulator_cpu_seconds", "workers_cpu_seconds", "agent_rejects", "wall_seconds", "cores"):
        assert key in data and key in keys, key
    assert data["mode"] == "end-to-end"
    assert data["agents_acked_first_state"] == 50
    assert data["agent_rejects"] == 0
    assert data["unexpected_acks"] == {"wrong_digest": 0, "duplicate": 0}
    assert data["controller_log_warnings"] == 0
    lat = data["write_to_last_ack_ms"]
    measured = lat["n"]
    noop = sum(data["noop_changes"].values())
    assert measured > 0 and measured + noop == 20
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert sum(v["n"] for v in data["write_to_last_ack_ms_by_kind"].values()) == measured
    kinds = set(data["change_kinds"]) | set(data["noop_changes"])
    assert {"pod-relabel", "pod-add", "pod-delete"} <= kinds and any(k.startswith("policy-") for k in kinds)
    assert 1 <= data["change_affected_nodes"]["mean"] <= data["change_affected_nodes"]["max"] <= 50
    assert data["snapshot_bytes_total"] > 0 and data["change_bytes_mean"] > 0
    assert 0 < data["delta_vs_snapshot_bytes_pct_single_pod"]["mean"] < 100
    assert data["first_sync_all_acked_seconds"] > 0 and data["controller_cpu_seconds_total"] > 0
    assert data["controller_rss_mb"]["peak"] >= data["controller_rss_mb"]["now"] > 0
    assert data["agent_applies"] >= 50 + measured
