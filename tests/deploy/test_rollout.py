"""The agent DaemonSet's rollout (maxSurge 1, maxUnavailable 0) is possible
with the agent as built: during it, the new agent starts on a node where
the old one still runs, in the same (host) network namespace, on the same
ports.  Both must be able to listen; otherwise the new pod crash-loops, is
never ready, the old one is never replaced, and the rollout hangs.

Runs two real agent processes (in-memory kernel, no controller) on
loopback ports, as the kubelet would start them.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
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


def _start(grpc_port: int, http_port: int, state: Path) -> subprocess.Popen[str]:
    state.mkdir()
    return subprocess.Popen(
        [sys.executable, "-m", "stockade", "agent", "--kernel", "fake", "--node-name", "node-1",
         "--controller", "127.0.0.1:1", "--grpc-listen", f"127.0.0.1:{grpc_port}",
         "--http-listen", f"127.0.0.1:{http_port}", "--state-dir", str(state)],
        cwd=m.REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _healthy(http_port: int, proc: subprocess.Popen[str], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""


@pytest.mark.xfail(
    strict=True,
    reason="the agent listens without SO_REUSEPORT (stockade/wire/grpcutil.py sets grpc.so_reuseport=0; "
           "nodeagent/service.py's aiohttp TCPSite has no reuse_port), so the surge agent fails to bind. "
           "When this passes, drop this marker and the known-issue note in docs/install-aks.md (Upgrades).",
)
def test_a_surge_agent_starts_beside_the_old_one(tmp_path: Path) -> None:
    if importlib.util.find_spec("nodeagent.main") is None:
        pytest.skip("nodeagent.main has not landed yet")
    grpc_port, http_port = _free_port(), _free_port()
    old = _start(grpc_port, http_port, tmp_path / "old")
    new = None
    try:
        assert _healthy(http_port, old, within=20), "the first agent did not come up"
        new = _start(grpc_port, http_port, tmp_path / "new")
        time.sleep(3)  # long enough to have bound its listeners, or to have failed to
        assert new.poll() is None, f"the surge agent exited with {new.returncode}:\n{_stop(new)}"
        assert old.poll() is None, "the old agent died when the new one started"
        # The old one leaves (the DaemonSet deletes it once the new one is ready);
        # the new one serves alone.
        _stop(old)
        assert _healthy(http_port, new, within=10), "the surge agent does not serve once the old one is gone"
    finally:
        _stop(old)
        if new is not None:
            _stop(new)
