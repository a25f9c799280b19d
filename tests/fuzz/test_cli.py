"""The real ``stockade evaluate`` entry point on broken case files: exit 2, file and field named, no traceback.

The fuzz targets call ``controller.evaluate_cli.main`` in-process; this
runs the installed entry point (``python -m stockade``) once on a folder of
broken files next to a good one, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fuzz.gen import RECIPES

ROOT = Path(__file__).resolve().parents[2]


def test_evaluate_names_every_unusable_file_and_still_runs_the_good_one(tmp_path: Path) -> None:
    good = json.loads((RECIPES / "recipe-01-deny-all-traffic-to-an-application.json").read_text())
    broken = {
        "a-invalid-utf8.json": b'{"name": "\xff\xfe"}',
        "b-truncated.json": json.dumps(good).encode()[:200],
        "c-wrong-type.json": json.dumps({**good, "pods": {"not": "a list"}}).encode(),
        "d-huge-int.json": json.dumps({**good, "nodes": 1}).replace('"nodes": 1', '"nodes": ' + "9" * 5000).encode(),
        "e-deep.json": b'{"name": "d", "notes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    }
    for name, data in broken.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "z-good.json").write_text(json.dumps(good))
    p = subprocess.run([sys.executable, "-m", "stockade", "evaluate", str(tmp_path)], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    expected = {
        "a-invalid-utf8.json": "<file>: not UTF-8 text",
        "b-truncated.json": "<file>: not valid JSON",
        "c-wrong-type.json": "pods: must be a list, not dict",
        "d-huge-int.json": "<file>: not usable JSON: ValueError",
        "e-deep.json": "<file>: not usable JSON: RecursionError",
    }
    for name, text in expected.items():
        assert f"unusable case file {tmp_path / name}: {text}" in p.stderr, (name, p.stderr)
    doc = json.loads(p.stdout)
    names = [c["name"] for c in doc["cases"]]
    assert good["name"] in names and doc["failed"] == 0
