"""`kubectl apply -f -` of each rendered kustomization against the project's
Kubernetes API emulator (stockade.kubeemu): every object is created, a
second apply changes nothing, and what is stored is what was applied.

This checks the apply mechanics (discovery of every kind we ship, create,
the last-applied round trip, kubectl's three-way patch).  Schemas are
test_schemas.py's job, against the real ones: the emulator stores objects as
given and does not validate them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import manifests as m
from tests.deploy.manifests import Obj

pytestmark = pytest.mark.timeout(120)


def _emulator_class() -> Any:
    from stockade.kubeemu import KubeEmulator

    return KubeEmulator


async def _kubectl(kubeconfig: Path, cache: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    exe = m.kubectl()
    assert exe is not None
    proc = await asyncio.create_subprocess_exec(
        exe, "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache), "--request-timeout", "20s", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _stored(kubeconfig: Path, cache: Path, text: str) -> dict[str, Obj]:
    rc, out, err = await _kubectl(kubeconfig, cache, "get", "-f", "-", "-o", "json", stdin=text)
    assert rc == 0, f"kubectl get failed:\n{out}\n{err}"
    stored = json.loads(out)
    items = stored["items"] if stored.get("kind") == "List" else [stored]
    return {m.ident(i): i for i in items}


def _deep_subset(want: Any, have: Any, path: str = "") -> list[str]:
    """Where ``have`` lacks or differs from something in ``want``."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [f"{path}: expected a map, stored {have!r}"]
        return [d for k, v in want.items() for d in
                (_deep_subset(v, have[k], f"{path}.{k}") if k in have else [f"{path}.{k}: missing"])]
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return [f"{path}: expected {want!r}, stored {have!r}"]
        return [d for i, (w, h) in enumerate(zip(want, have, strict=True)) for d in _deep_subset(w, h, f"{path}[{i}]")]
    return [] if want == have else [f"{path}: expected {want!r}, stored {have!r}"]


@pytest.mark.parametrize("target", list(m.TARGETS))
async def test_kubectl_apply_against_the_emulator(rendered_text: dict[str, str], rendered: dict[str, list[Obj]],
                                                  target: str, tmp_path: Path) -> None:
    emulator = _emulator_class()
    text, objs = rendered_text[target], rendered[target]
    kubeconfig, cache = tmp_path / "kubeconfig", tmp_path / "cache"
    async with emulator(host="127.0.0.1", port=0) as emu:
        emu.write_kubeconfig(str(kubeconfig))

        rc, out, err = await _kubectl(kubeconfig, cache, "apply", "-f", "-", stdin=text)
        assert rc == 0, f"kubectl apply failed:\n{out}\n{err}"
        lines = out.strip().splitlines()
        assert len(lines) == len(objs) and all(line.endswith(" created") for line in lines), out

        before = await _stored(kubeconfig, cache, text)
        assert set(before) == {m.ident(o) for o in objs}

        rc, out, err = await _kubectl(kubeconfig, cache, "apply", "-f", "-", stdin=text)
        assert rc == 0, f"second kubectl apply failed:\n{out}\n{err}"
        lines = out.strip().splitlines()
        assert len(lines) == len(objs), out
        for line in lines:
            # kubectl's client-side apply always sends a patch for a PDB: its
            # selector has patchStrategy "replace", so the computed patch is
            # never empty.  Anything else must be "unchanged".
            expected = "configured" if line.startswith("poddisruptionbudget.policy/") else "unchanged"
            assert line.endswith(f" {expected}"), out
        after = await _stored(kubeconfig, cache, text)
        changed = [k for k in before if before[k]["metadata"]["resourceVersion"] !=
                   after[k]["metadata"]["resourceVersion"]]
        assert not changed, f"the second apply changed {changed}"

        by_ident = after
        for obj in objs:
            have = by_ident[m.ident(obj)]
            want = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
            diffs = _deep_subset(want, have, m.ident(obj))
            diffs += _deep_subset(obj["metadata"].get("labels", {}), have["metadata"].get("labels", {}),
                                  f"{m.ident(obj)}.metadata.labels")
            assert not diffs, "\n".join(diffs)
