"""Starting and stopping the lab's processes inside its namespaces.

Every process runs under ``ip netns exec NS`` (which also gives it the
namespace's own /sys), with ``PR_SET_PDEATHSIG=SIGKILL`` so it dies with the
runner even when the runner is killed outright, in a session of its own (a
terminal's Ctrl-C goes to the runner, which stops everything in order), its
stdout and stderr in a
log file under the run's work directory, and its PID recorded in the run
state before anything else happens.  :func:`start` waits for a ready line on
stdout when asked.  :func:`stop` ends one process by PID: SIGTERM, a bounded
wait, SIGKILL.

The command lines of the pipeline's processes (emulator, controller, agent,
pod server) are built here too, so the runner and the demo agree on them.
It does not decide when to start what (that is the runner's job).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from dataclasses import dataclass, field

from stockade.lab.runstate import RunState

PR_SET_PDEATHSIG = 1
READY_TIMEOUT = 20.0
STOP_GRACE = 3.0

EMULATOR_PORT = 6443
CONTROLLER_GRPC = 7700
CONTROLLER_HTTP = 7701
AGENT_GRPC = 7702
AGENT_HTTP = 7703


class ProcessError(RuntimeError):
    """A lab process did not start or did not get ready (with its log tail)."""


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class LabProcess:
    name: str
    netns: str
    argv: list[str]
    proc: asyncio.subprocess.Process
    log: str
    ready_line: str = ""
    _drain: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.returncode is None

    def log_tail(self, n: int = 20) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


async def start(state: RunState, name: str, netns: str, argv: list[str],
                ready: str | None = None, timeout: float = READY_TIMEOUT) -> LabProcess:
    """Start ``argv`` inside ``netns``.  With ``ready``, wait until a stdout
    line contains it (raises ProcessError with the log tail otherwise)."""
    logdir = os.path.join(state.workdir, "logs")
    os.makedirs(logdir, exist_ok=True)
    log = os.path.join(logdir, f"{name}.log")
    logf = open(log, "ab")
    full = ["ip", "netns", "exec", netns, *argv]
    proc = await asyncio.create_subprocess_exec(
        *full, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=logf,
        preexec_fn=_die_with_parent, start_new_session=True,  # a terminal's Ctrl-C reaches the runner only
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    state.add_process(proc.pid, name)
    lp = LabProcess(name, netns, argv, proc, log)
    assert proc.stdout is not None
    stdout = proc.stdout
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def drain() -> None:
        try:
            while line := await stdout.readline():
                logf.write(line)
                logf.flush()
                if ready is not None and not got.done() and ready in line.decode(errors="replace"):
                    got.set_result(line.decode(errors="replace").strip())
        finally:
            logf.close()
            if ready is not None and not got.done():
                got.set_exception(ProcessError(f"{name} exited (status {await proc.wait()}) before it was ready:\n"
                                               f"{lp.log_tail()}"))

    lp._drain = asyncio.create_task(drain(), name=f"drain-{name}")
    if ready is not None:
        try:
            async with asyncio.timeout(timeout):
                lp.ready_line = await got
        except TimeoutError:
            await stop(state, lp)
            raise ProcessError(f"{name} was not ready within {timeout:.0f} s:\n{lp.log_tail()}") from None
        except ProcessError:
            await stop(state, lp)
            raise
    return lp


def _signal(lp: LabProcess, sig: int) -> None:
    """Send ``sig`` by PID without reaping.  ``Popen.send_signal`` (and
    ``kill``) polls first (bpo-38630): for a process that already died it
    reaps the zombie itself, asyncio's child watcher then finds no child and
    reports exit status 255.  Left to the watcher, the reaping reports the
    real status; until then the zombie holds its PID, so the signal cannot
    reach another process."""
    if lp.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(lp.pid, sig)


async def stop(state: RunState, lp: LabProcess, grace: float = STOP_GRACE) -> int | None:
    """SIGTERM, wait up to ``grace``, SIGKILL; returns the exit status (the
    real one also for a process that had already exited: negative for a
    signal, as ``Popen.returncode``)."""
    if lp.proc.returncode is None:
        _signal(lp, signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await lp.proc.wait()
        except TimeoutError:
            _signal(lp, signal.SIGKILL)
            await lp.proc.wait()
    if lp._drain is not None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await asyncio.gather(lp._drain, return_exceptions=True)
    state.drop_process(lp.pid)
    return lp.proc.returncode


def python() -> list[str]:
    return [sys.executable]


def stockade() -> list[str]:
    return [sys.executable, "-m", "stockade.cli"]


def podserver_argv(ports: list[tuple[int, str]], bind: str | None = None) -> list[str]:
    argv = [*python(), "-m", "stockade.lab.podserver"]
    if bind:
        argv += ["--bind", bind]
    return argv + [f"{proto.lower()}:{port}" for port, proto in ports]


# Bookmarks every second (a real API server sends them about once a minute):
# a NetworkPolicy DELETE is answered with a Status that carries no
# resourceVersion; the lab's client reads the deletion's own version from a
# watch, but when it cannot (the version it resumes from has expired) it
# falls back to the cluster's current version, which a quiet watch of the
# kind passes only at a bookmark.
EMULATOR_BOOKMARK_SECONDS = 1.0


def emulator_argv(listen: str, kubeconfig: str) -> list[str]:
    return [*stockade(), "kube-emulator", "--listen", listen, "--kubeconfig-out", kubeconfig,
            "--bookmark-interval", str(EMULATOR_BOOKMARK_SECONDS)]


def controller_argv(kubeconfig: str, ip: str, replica: str = "lab-0", insecure: bool = False,
                    namespace: str = "stockade-system") -> list[str]:
    """The controller's command line: by default as an operator runs it (own
    CA, agents authenticated by their tokens), its certificate also naming
    ``ip`` (the lab's agents dial it by address); ``insecure``: plaintext,
    no agent authentication."""
    argv = [*stockade(), "controller", "--kubeconfig", kubeconfig,
            "--grpc-listen", f"{ip}:{CONTROLLER_GRPC}", "--http-listen", f"{ip}:{CONTROLLER_HTTP}",
            "--replica-id", replica]
    return argv + (["--insecure-grpc"] if insecure else ["--namespace", namespace, "--tls-san", ip])


def agent_argv(node: str, controller_ip: str, ip: str, state_dir: str, backend: str = "auto",
               bridged: bool = False, ca_file: str = "", token_file: str = "") -> list[str]:
    """The agent's command line; with ``ca_file`` it verifies the controller
    with that bundle and sends the token in ``token_file``, else plaintext."""
    argv = [*stockade(), "agent", *(["--bridged"] if bridged else []), "--node-name", node,
            "--controller", f"{controller_ip}:{CONTROLLER_GRPC}",
            "--grpc-listen", f"{ip}:{AGENT_GRPC}", "--http-listen", f"{ip}:{AGENT_HTTP}",
            "--iptables-backend", backend, "--state-dir", state_dir]
    if ca_file:
        argv += ["--ca-file", ca_file, "--token-file", token_file]
    return argv
