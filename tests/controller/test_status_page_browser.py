"""The status page in a real browser (headless Chromium): a running
controller with connected agents and a malformed policy; the test loads the
page and asserts what an operator sees."""

from __future__ import annotations

import asyncio
import html
import os
import re
import shutil
import tempfile
from typing import Any

import pytest

from tests.controller.conftest import StartAgents, StartController, in_sync
from tests.controller.kube import Kube, eventually, policy
from tests.controller.test_controller import BROKEN_POLICY, seed_cluster

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


async def chromium(*args: str, timeout: float = 30) -> str:
    with tempfile.TemporaryDirectory(prefix="stockade-chromium-") as profile:
        p = await asyncio.create_subprocess_exec(
            shutil.which("chromium") or "chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            out, _ = await asyncio.wait_for(p.communicate(), timeout)
        finally:
            if p.returncode is None:
                p.kill()
                await p.wait()
    return out.decode()


def rows(dom: str, table_id: str) -> list[str]:
    table = dom.split(f'<table id="{table_id}">', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", r)).split())
            for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


async def test_status_page_in_chromium(kube: Kube, start_controller: StartController,
                                       start_agents: StartAgents, tmp_path: Any) -> None:
    await seed_cluster(kube)
    ctl = await start_controller("replica-page")
    agents = await start_agents([f"127.0.0.1:{ctl.grpc_port}"])
    await eventually(lambda: in_sync(ctl, agents), timeout=15)
    await eventually(lambda: all(n["in_sync"] for n in ctl.status()["nodes"]), timeout=10)
    await kube.create(policy("shop", "broken", BROKEN_POLICY))
    await eventually(lambda: "shop/broken" in ctl.writer.invalid)
    url = f"http://127.0.0.1:{ctl.http_port}/"
    dom = await chromium("--dump-dom", url)
    assert "Stockade controller" in dom and "replica-page" in dom and "READY" in dom
    nodes = rows(dom, "nodes")
    assert len(nodes) == 2
    for name, row in zip(("n1", "n2"), nodes, strict=True):
        assert name in row and "connected" in row and "in sync" in row and "not connected" not in row, row
    pols = {r.split()[0]: r for r in rows(dom, "policies")}
    assert set(pols) == {"shop/allow-client", "shop/broken"}
    assert "enforced" in pols["shop/allow-client"] and "INVALID" not in pols["shop/allow-client"]
    assert " 2 " in pols["shop/allow-client"]  # pods selected: web-1 and web-2
    assert "INVALID: not enforced" in pols["shop/broken"] and "ingres" in pols["shop/broken"]
    totals = html.unescape(re.sub(r"<[^>]+>", " ", dom.split('id="totals">', 1)[1].split("</div></div>")[0]))
    assert "1 invalid policies" in " ".join(totals.split())
    shot = tmp_path / "status.png"
    await chromium(f"--screenshot={shot}", "--window-size=1400,1000", url)
    assert shot.exists() and shot.stat().st_size > 10_000
    if os.environ.get("STOCKADE_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["STOCKADE_KEEP_SCREENSHOT"])
