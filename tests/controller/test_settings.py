"""Command-line parsing of ``stockade controller``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


# -- channel security -------------------------------------------------------------


def _security(tmp_path: Path, argv: list[str], namespace_file: str | None = None) -> object:
    from controller.settings import build_parser, parse_security

    kc = tmp_path / "kc"
    kc.write_text("x")
    for name in ("c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).write_text("x")
    argv = [str(tmp_path / a[5:]) if a.startswith("FILE:") else a for a in argv]
    ns = build_parser().parse_args(["--kubeconfig", str(kc), *argv])
    return parse_security(ns, namespace_file or str(tmp_path / "no-namespace-file"))


@pytest.mark.parametrize(("argv", "want"), [
    pytest.param([], ("self-signed", "tokenreview", "agent", "stockade-system"), id="defaults"),
    pytest.param(["--insecure-grpc"], ("insecure", "none", "open", "stockade-system"), id="insecure"),
    pytest.param(["--tls-mode", "insecure"], ("insecure", "none", "open", "stockade-system"), id="insecure-mode"),
    pytest.param(["--insecure-grpc", "--auth", "tokenreview"], ("insecure", "tokenreview", "agent", "stockade-system"),
                 id="insecure-with-tokens"),
    pytest.param(["--tls-cert-file", "FILE:c.pem", "--tls-key-file", "FILE:k.pem", "--tls-ca-file", "FILE:ca.pem"],
                 ("files", "tokenreview", "agent", "stockade-system"), id="files-implied"),
    pytest.param(["--auth", "none"], ("self-signed", "none", "open", "stockade-system"), id="tls-without-auth"),
    pytest.param(["--debug-rpcs", "off", "--namespace", "kube-stockade"], ("self-signed", "tokenreview", "off",
                                                                          "kube-stockade"), id="debug-off"),
])
def test_security_flags(tmp_path: Path, argv: list[str], want: tuple[str, str, str, str]) -> None:
    s: Any = _security(tmp_path, argv)
    assert (s.tls_mode, s.auth, s.debug_rpcs, s.namespace) == want


def test_namespace_defaults_to_the_pods_own(tmp_path: Path) -> None:
    f = tmp_path / "namespace"
    f.write_text("my-stockade\n")
    s: Any = _security(tmp_path, [], str(f))
    assert s.namespace == "my-stockade"


@pytest.mark.parametrize(("argv", "msg"), [
    pytest.param(["--insecure-grpc", "--tls-mode", "files"], "--insecure-grpc: contradicts", id="contradiction"),
    pytest.param(["--tls-mode", "files", "--tls-cert-file", "FILE:c.pem"], "--tls-key-file: required",
                 id="files-incomplete"),
    pytest.param(["--tls-cert-file", "/nonexistent.pem", "--tls-key-file", "FILE:k.pem", "--tls-ca-file",
                  "FILE:ca.pem"], "--tls-cert-file: no such file", id="files-missing"),
    pytest.param(["--insecure-grpc", "--tls-key-file", "FILE:k.pem"], "--tls-key-file: only used with --tls-mode files",
                 id="file-without-files-mode"),
    pytest.param(["--insecure-grpc", "--tls-san", "10.0.0.1"], "--tls-san: only used", id="san-without-self-signed"),
    pytest.param(["--tls-san", "bad_name!"], "--tls-san: not a DNS name", id="bad-san"),
    pytest.param(["--auth", "none", "--debug-rpcs", "agent"], "--debug-rpcs agent: needs --auth tokenreview",
                 id="debug-agent-without-auth"),
    pytest.param(["--namespace", " "], "--namespace: must not be empty", id="blank-namespace"),
])
def test_security_flag_errors(tmp_path: Path, argv: list[str], msg: str) -> None:
    with pytest.raises(SettingsError, match=msg):
        _security(tmp_path, argv)


# -- compiled rules: checked at start against the agents' limits ---------------------

IN_CLUSTER = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}


def test_compile_defaults_and_nflog_flags() -> None:
    from controller.compile_policy import CompileSettings

    assert parse_args([], environ=IN_CLUSTER).compile == CompileSettings()
    s = parse_args(["--nflog-group", "65535", "--nflog-limit", "5/min"], environ=IN_CLUSTER)
    assert (s.compile.nflog_group, s.compile.nflog_limit) == (65535, "5/min")
    assert parse_args(["--nflog-group", "0"], environ=IN_CLUSTER).compile.nflog_limit == CompileSettings().nflog_limit


@pytest.mark.parametrize(("argv", "msg"), [
    pytest.param(["--nflog-group", "65536"], r"--nflog-group: 65536 is not in 0\.\.65535", id="group-too-big"),
    pytest.param(["--nflog-group", "-1"], r"--nflog-group: -1 is not in 0\.\.65535", id="group-negative"),
    pytest.param(["--nflog-group", "1", "--nflog-limit", "10001/second"],
                 r"--nflog-limit: '10001/second' is faster than iptables' limit match takes \(at most 10000/second\)",
                 id="limit-too-fast"),
    pytest.param(["--nflog-group", "1", "--nflog-limit", "often"], "--nflog-limit: 'often' is not a rate like 10/second",
                 id="limit-syntax"),
    pytest.param(["--nflog-limit", "1/s"], "--nflog-limit: only used with --nflog-group", id="limit-without-group"),
])
def test_compile_flag_errors_name_the_flag_and_the_limit(argv: list[str], msg: str) -> None:
    with pytest.raises(SettingsError, match=msg):
        parse_args(argv, environ=IN_CLUSTER)


def test_the_flag_limits_are_the_agents_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """No second copy of the numbers: the flags are checked by the functions validate() uses."""
    from stockade import state_validation

    monkeypatch.setattr(state_validation, "MAX_NFLOG_GROUP", 7)
    with pytest.raises(SettingsError, match=r"--nflog-group: 8 is not in 0\.\.7"):
        parse_args(["--nflog-group", "8"], environ=IN_CLUSTER)


@pytest.mark.parametrize(("kwargs", "msg"), [
    pytest.param({"nflog_group": 70000}, r"nflog_group: 70000 is not in 0\.\.65535", id="group"),
    pytest.param({"nflog_group": 1, "nflog_limit": "100000/s"}, "limit: '100000/s' is faster", id="limit"),
    pytest.param({"nflog_group": 1, "nflog_limit": "1/fortnight"}, "limit: '1/fortnight' is not a rate", id="syntax"),
])
def test_check_compile_runs_the_agents_validate_on_a_compiled_node(kwargs: dict[str, Any], msg: str) -> None:
    """Settings built in code (not from flags) are refused the same way:
    the base state of a node compiled with them fails the agents' validate()."""
    from controller.compile_policy import CompileSettings
    from controller.settings import check_compile

    with pytest.raises(SettingsError, match=f"compile settings .*every agent would refuse the states: .*{msg}"):
        check_compile(CompileSettings(**kwargs))
    check_compile(CompileSettings())
    check_compile(CompileSettings(nflog_group=65535, nflog_limit="10000/s"))


async def test_controller_start_refuses_bad_compile_settings_before_starting_anything() -> None:
    from controller.compile_policy import CompileSettings
    from controller.runtime import Controller
    from controller.settings import Settings

    ctl = Controller(Settings(kubeconfig="/nonexistent", compile=CompileSettings(nflog_group=70000)))
    with pytest.raises(SettingsError, match="nflog_group: 70000"):
        await ctl.start()
    assert ctl.tasks == [] and ctl.grpc is None and ctl.http is None
    await ctl.stop()
