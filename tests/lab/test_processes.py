"""stockade.lab.processes.stop() on processes that already died (no root:
plain short-lived subprocesses, no network namespaces)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import warnings
from collections.abc import AsyncIterator

import pytest

from stockade.lab.processes import LabProcess, stop
from stockade.lab.runstate import RunState

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def signal_watcher() -> AsyncIterator[None]:
    """A child watcher that reaps only when the event loop handles SIGCHLD
    (the default reaps from a thread at once), so a test can hold a dead,
    unreaped child while it does not yield: the moment the lab's stop()
    raced with before (the status came out as 255)."""
    if not hasattr(asyncio, "SafeChildWatcher"):  # Python >= 3.14: no pluggable watchers
        pytest.skip("no pluggable asyncio child watchers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = asyncio.get_child_watcher()
        watcher = asyncio.SafeChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.set_child_watcher(watcher)
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_child_watcher(old)
            watcher.close()


def dead_unreaped(pid: int) -> None:
    """Block (without yielding to the loop) until ``pid`` has exited; leave it unreaped."""
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)


async def spawn(code: str) -> LabProcess:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    return LabProcess("short", "", [sys.executable, "-c", code], proc, os.devnull)


@pytest.mark.parametrize(("code", "want"), [
    pytest.param("raise SystemExit(3)", 3, id="exit-3"),
    pytest.param("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL, id="killed"),
])
async def test_stop_reports_the_real_status_of_a_dead_unreaped_process(signal_watcher: None, code: str,
                                                                        want: int) -> None:
    lp = await spawn(code)
    dead_unreaped(lp.pid)
    assert lp.proc.returncode is None  # dead, but asyncio does not know yet
    assert await stop(RunState("test-stop-dead"), lp, grace=5) == want


async def test_stop_reports_the_real_status_after_asyncio_reaped() -> None:
    lp = await spawn("raise SystemExit(4)")
    await lp.proc.wait()
    assert await stop(RunState("test-stop-reaped"), lp, grace=5) == 4


async def test_stop_of_a_killed_process_at_once_is_never_255() -> None:
    """The lab's case (docs/reliability.md): SIGKILL, then stop() at once, with the default watcher."""
    for _ in range(20):
        lp = await spawn("import time; time.sleep(30)")
        os.kill(lp.pid, signal.SIGKILL)
        assert await stop(RunState("test-stop-killed"), lp, grace=5) == -signal.SIGKILL
