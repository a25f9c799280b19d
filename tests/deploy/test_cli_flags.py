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
    settings = importlib.import_module("controller.settings")
    args = _args(rendered[overlay], "Deployment", m.CONTROLLER)
    assert args[0] == "controller"
    parsed = settings.parse_args(args[1:], environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert (parsed.grpc_host, parsed.grpc_port, parsed.http_host, parsed.http_port) == \
        ("0.0.0.0", 7700, "0.0.0.0", 7701)
    assert parsed.replica_id == "node-or-pod-0"
    assert parsed.kubeconfig is None, "in-cluster config, no kubeconfig flag in the manifest"


@pytest.mark.parametrize("overlay", m.INSTALLS)
def test_agent_accepts_its_manifest_arguments(rendered: dict[str, list[Obj]], overlay: str) -> None:
    agent_main = importlib.import_module("nodeagent.main")
    args = _args(rendered[overlay], "DaemonSet", m.AGENT)
    assert args[0] == "agent"
    parsed = agent_main.parse(args[1:])
    assert parsed.node_name == "node-or-pod-0"
    assert parsed.controller == ["stockade-controller.stockade-system.svc:7700"]
    assert (parsed.grpc_listen, parsed.http_listen) == ("0.0.0.0:7702", "0.0.0.0:7703")
    assert (parsed.iptables_backend, parsed.reconcile_period, parsed.state_dir) == ("auto", 60.0, "/var/lib/stockade")
    assert parsed.bridged is (overlay == "aks-kubenet")
    assert parsed.kernel == "real"
    # the channel: TLS verified with the published bundle, the projected token
    assert (parsed.ca_file, parsed.token_file) == ("/etc/stockade/ca/ca.crt", "/var/run/secrets/stockade/token")
    assert not parsed.insecure_grpc
    sec = agent_main.channel_security(parsed)
    assert sec.tls and sec.server_name == "stockade-controller.stockade-system.svc"


def test_agent_has_the_cleanup_the_cleanup_daemonset_runs(rendered: dict[str, list[Obj]]) -> None:
    (ds,) = m.of_kind(rendered["cleanup"], "DaemonSet")
    (ctr,) = m.pod_spec(ds)["containers"]
    script = " ".join(m.command_line(rendered["cleanup"], ctr))
    match = re.search(r"stockade (agent cleanup[^&;|]*)", script)
    assert match, script
    words = match.group(1).split()
    done = subprocess.run([sys.executable, "-m", "stockade", *words, "--help"], capture_output=True, text=True,
                          timeout=60, cwd=m.REPO)
    assert done.returncode == 0, f"`stockade {' '.join(words)} --help` failed:\n{done.stdout}\n{done.stderr}"
