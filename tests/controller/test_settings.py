"""Command-line parsing of ``stockade controller``."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.settings import SettingsError, parse_args, parse_hostport


@pytest.mark.parametrize(("text", "want"), [
    pytest.param("0.0.0.0:7700", ("0.0.0.0", 7700), id="v4"),
    pytest.param("127.0.0.1:0", ("127.0.0.1", 0), id="port-zero"),
    pytest.param("[::1]:7701", ("::1", 7701), id="v6"),
    pytest.param("localhost:80", ("localhost", 80), id="name"),
])
def test_hostport(text: str, want: tuple[str, int]) -> None:
    assert parse_hostport("--x", text) == want


@pytest.mark.parametrize("text", ["7700", ":7700", "host:", "host:port", "host:70000", "host:-1"])
def test_hostport_errors_name_the_flag(text: str) -> None:
    with pytest.raises(SettingsError, match="--grpc-listen"):
        parse_hostport("--grpc-listen", text)


def test_defaults(tmp_path: Path) -> None:
    kc = tmp_path / "kc"
    kc.write_text("x")
    s = parse_args(["--kubeconfig", str(kc)], environ={})
    assert (s.grpc_host, s.grpc_port, s.http_host, s.http_port) == ("0.0.0.0", 7700, "0.0.0.0", 7701)
    assert s.replica_id  # hostname
    s2 = parse_args(["--kubeconfig", str(kc), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:9",
                     "--replica-id", "r2"], environ={})
    assert (s2.grpc_port, s2.http_port, s2.replica_id) == (0, 9, "r2")


def test_in_cluster_needs_no_kubeconfig() -> None:
    s = parse_args([], environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert s.kubeconfig is None


@pytest.mark.parametrize(("argv", "msg"), [
    pytest.param([], "--kubeconfig: required", id="no-config-outside-cluster"),
    pytest.param(["--kubeconfig", "/nonexistent/kc"], "--kubeconfig: no such file", id="missing-file"),
    pytest.param(["--kubeconfig", "KC", "--http-listen", "nope"], "--http-listen", id="bad-listen"),
    pytest.param(["--kubeconfig", "KC", "--replica-id", " "], "--replica-id", id="blank-replica"),
])
def test_errors(tmp_path: Path, argv: list[str], msg: str) -> None:
    kc = tmp_path / "kc"
    kc.write_text("x")
    argv = [str(kc) if a == "KC" else a for a in argv]
    with pytest.raises(SettingsError, match=msg):
        parse_args(argv, environ={})
