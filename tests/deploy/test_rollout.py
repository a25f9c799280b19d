"""The agent DaemonSet's rollout (maxSurge 1, maxUnavailable 0) is possible
with the agent as built: during it, the new agent starts on a node where
the old one still runs, in the same (host) network namespace, on the same
ports.  Both must be able to listen; otherwise the new pod crash-loops, is
never ready, the old one is never replaced, and the rollout hangs.

Runs two real agent processes (in-memory kernel, no controller) on
loopback ports, as the kubelet would start them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.deploy import manifests as m

pytestmark = pytest.mark.timeout(60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Agent:
    """One agent process; its output collected line by line."""

    STARTED = "agent node-1 started: "  # logged once both listeners are bound

    def __init__(self, grpc_port: int, http_port: int, state: Path) -> None:
        state.mkdir()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stockade", "agent", "--kernel", "fake", "--node-name", "node-1",
             "--controller", "127.0.0.1:1", "--grpc-listen", f"127.0.0.1:{grpc_port}",
             "--http-listen", f"127.0.0.1:{http_port}", "--state-dir", str(state)],
            cwd=m.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def started_or_exited(self, within: float) -> bool:
        """True once it logged that it started (both listeners bound)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if any(self.STARTED in line for line in self.lines):
                return True
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                return any(self.STARTED in line for line in self.lines)
            time.sleep(0.05)
        return False

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return "".join(self.lines)


def _healthy(http_port: int, agent: Agent, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and agent.proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


def test_a_surge_agent_starts_beside_the_old_one(tmp_path: Path) -> None:
    grpc_port, http_port = _free_port(), _free_port()
    old = Agent(grpc_port, http_port, tmp_path / "old")
    new = None
    try:
        assert old.started_or_exited(within=20) and _healthy(http_port, old, within=10), \
            f"the first agent did not come up:\n{old.stop()}"
        new = Agent(grpc_port, http_port, tmp_path / "new")
        assert new.started_or_exited(within=20), f"the surge agent did not start:\n{new.stop()}"
        time.sleep(0.5)
        assert new.proc.poll() is None, f"the surge agent exited with {new.proc.returncode}:\n{new.stop()}"
        assert old.proc.poll() is None, f"the old agent died when the new one started:\n{old.stop()}"
        # The old one leaves (the DaemonSet deletes it once the new one is ready);
        # the new one serves alone.
        old.stop()
        assert _healthy(http_port, new, within=10), "the surge agent does not serve once the old one is gone"
    finally:
        old.stop()
        if new is not None:
            new.stop()
