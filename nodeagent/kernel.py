"""The one small command interface between the agent and the kernel.

Everything the agent does to the kernel is a command run through a
:class:`Kernel`: ``ipset save|restore``, ``iptables-save|restore`` (nft or
legacy, IPv4 or IPv6), ``conntrack -D`` and a few reads of ``/proc``.  The
planner and the apply loop are therefore tested without root against
:class:`nodeagent.fake_kernel.FakeKernel`, and the very same code runs for
real through :class:`SubprocessKernel` (optionally prefixed with
``ip netns exec NS`` so tests and benchmarks work inside a network
namespace).

It deliberately does not interpret anything: no parsing of save output
(``kernel_read``), no rendering (``ipset_render``, ``restore_builder``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from stockade.state import Family

Backend = Literal["nft", "legacy", "python-iptables"]
BACKENDS: tuple[str, ...] = ("auto", "nft", "legacy", "python-iptables")

XTABLES_LOCK = "/run/xtables.lock"


@dataclass(frozen=True, slots=True)
class CmdResult:
    """What one command did: exit code, output, wall time."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def describe(self) -> str:
        """One line for logs and error reports."""
        err = self.stderr.strip().replace("\n", " | ")
        return f"`{' '.join(self.argv)}` exited {self.rc}: {err[:2000]}"


class Kernel(Protocol):
    """Run one command; never raises for a failing command (rc != 0)."""

    async def run(self, argv: Sequence[str], stdin: str | None = None, *, timeout: float = 30.0) -> CmdResult: ...


class SubprocessKernel:
    """The real kernel: ``asyncio`` subprocesses.

    ``prefix`` is put before every command, e.g. ``("ip", "netns", "exec",
    "stk-t-123")``.  A command that outlives ``timeout`` is killed and
    reported with rc -9.  ``calls`` counts commands run (for benchmarks).
    """

    def __init__(self, prefix: Sequence[str] = ()) -> None:
        self.prefix = tuple(prefix)
        self.calls = 0

    async def run(self, argv: Sequence[str], stdin: str | None = None, *, timeout: float = 30.0) -> CmdResult:
        full = (*self.prefix, *argv)
        self.calls += 1
        t0 = time.perf_counter()
        try:
            proc = await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "LC_ALL": "C"})
        except OSError as e:
            return CmdResult(tuple(argv), 127, "", f"cannot run {full[0]}: {e}", time.perf_counter() - t0)
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return CmdResult(tuple(argv), -9, "", f"timed out after {timeout}s", time.perf_counter() - t0)
        except asyncio.CancelledError:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        rc = proc.returncode if proc.returncode is not None else -1
        return CmdResult(tuple(argv), rc, out.decode(errors="replace"), err.decode(errors="replace"),
                         time.perf_counter() - t0)


@dataclass(frozen=True, slots=True)
class Tools:
    """Command names for one iptables flavour ("nft" or "legacy")."""

    flavour: Literal["nft", "legacy"]

    def save(self, family: Family) -> str:
        return f"{'iptables' if family == 'inet' else 'ip6tables'}-{self.flavour}-save"

    def restore(self, family: Family) -> str:
        return f"{'iptables' if family == 'inet' else 'ip6tables'}-{self.flavour}-restore"

    def save_argv(self, family: Family, counters: bool = False) -> list[str]:
        return [self.save(family), "-t", "filter"] + (["-c"] if counters else [])

    def restore_argv(self, family: Family) -> list[str]:
        # -w: wait for the xtables lock (legacy); accepted and harmless on nft.
        return [self.restore(family), "--noflush", "-w", "5"]
