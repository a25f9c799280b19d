"""``stockade kube-emulator`` as a process: ready line, kubeconfig, graceful stop."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from stockade.kubeemu.main import main, parse_listen

pytestmark = pytest.mark.timeout(30)


async def start(tmp_path: Path, *extra: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stockade", "kube-emulator", "--listen", "127.0.0.1:0",
        "--kubeconfig-out", str(tmp_path / "kc"), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
    assert line.startswith("ready http://127.0.0.1:"), line
    return proc, line.split()[1]


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")])
async def test_ready_serve_and_graceful_stop(tmp_path: Path, sig: signal.Signals) -> None:
    proc, url = await start(tmp_path, "--history", "5", "--bookmark-interval", "30")
    try:
        config = json.loads((tmp_path / "kc").read_text())
        assert config["clusters"][0]["cluster"]["server"] == url
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/version") as r:
                assert (await r.json())["gitVersion"].startswith("v1.")
            async with http.get(f"{url}/api/v1/namespaces", params={"watch": "1"}) as stream:
                first = json.loads(await stream.content.readline())
                assert first["type"] == "ADDED"
                loop = asyncio.get_running_loop()
                started = loop.time()
                proc.send_signal(sig)
                rest = await asyncio.wait_for(stream.content.read(), 5)  # ends cleanly, no payload error
                assert all(json.loads(line)["type"] == "ADDED" for line in rest.splitlines())
        assert await asyncio.wait_for(proc.wait(), 5) == 0
        assert loop.time() - started < 1.5
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_history_flag_sets_the_window(tmp_path: Path) -> None:
    proc, url = await start(tmp_path, "--history", "3")
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(5):
                async with http.post(f"{url}/api/v1/namespaces", json={"metadata": {"name": f"ns{i}"}}) as r:
                    assert r.status == 201
            async with http.get(f"{url}/api/v1/namespaces", params={"watch": "1", "resourceVersion": "2"}) as r:
                event = json.loads(await r.content.readline())
        assert event["type"] == "ERROR" and event["object"]["code"] == 410
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 5) == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("127.0.0.1:0", ("127.0.0.1", 0), id="v4"),
        pytest.param("[::1]:6443", ("::1", 6443), id="v6"),
        pytest.param("10.0.0.1:6443", ("10.0.0.1", 6443), id="lab"),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("argv", [
    pytest.param(["--listen", "nonsense"], id="bad-listen"),
    pytest.param(["--history", "x"], id="bad-history"),
])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_zero_history_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--history", "0"]) == 2
    assert "--history" in capsys.readouterr().err


def test_port_in_use_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--listen", f"127.0.0.1:{port}"]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
