"""The command lines in the manifests are ones the processes accept.

The manifests and the processes are written by different people; these
tests tie them together.  Each runs as soon as the process's module exists.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from tests.deploy import manifests as m
from tests.deploy.manifests import Obj


def _args(objs: list[Obj], kind: str, name: str) -> list[str]:
    (ctr,) = m.pod_spec(m.one(objs, kind, name))["containers"]
    args = m.command_line(objs, ctr)
    unresolved = [a for a in args if "$(" in a]
    assert not unresolved, f"{kind}/{name}: variables left unexpanded: {unresolved}"
    # Downward-API placeholders become plausible values.
    return [re.sub(r"^<[a-zA-Z.]+>$", "node-or-pod-0", a) for a in args]


@pytest.mark.parametrize("overlay", m.INSTALLS)
def test_controller_accepts_its_manifest_arguments(rendered: dict[str, list[Obj]], overlay: str) -> None:
    settings = pytest.importorskip("controller.settings")
    args = _args(rendered[overlay], "Deployment", m.CONTROLLER)
    assert args[0] == "controller"
    parsed = settings.parse_args(args[1:], environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert (parsed.grpc_host, parsed.grpc_port, parsed.http_host, parsed.http_port) == \
        ("0.0.0.0", 7700, "0.0.0.0", 7701)
    assert parsed.replica_id == "node-or-pod-0"
    assert parsed.kubeconfig is None, "in-cluster config, no kubeconfig flag in the manifest"


@pytest.mark.parametrize("overlay", m.INSTALLS)
def test_agent_knows_every_flag_of_its_manifest(rendered: dict[str, list[Obj]], overlay: str) -> None:
    if importlib.util.find_spec("nodeagent.main") is None:
        pytest.skip("nodeagent.main has not landed yet: `stockade agent` cannot be asked for its flags")
    args = _args(rendered[overlay], "DaemonSet", m.AGENT)
    assert args[0] == "agent"
    done = subprocess.run([sys.executable, "-m", "stockade", "agent", "--help"], capture_output=True, text=True,
                          timeout=60, cwd=m.REPO)
    assert done.returncode == 0, done.stderr
    flags = [a for a in args if a.startswith("--")]
    unknown = [f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", done.stdout)]
    assert not unknown, f"`stockade agent --help` does not list {unknown}"
