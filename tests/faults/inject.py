"""Injecting faults into a running lab, from outside its processes.

The lab (``stockade.lab``) starts, stops and restarts processes politely;
these are the impolite versions, built only on its public objects (PIDs,
namespace names, addresses):

* :func:`kill9` -- SIGKILL one lab process by PID and reap it;
* :func:`kill_when_applying` -- watch an agent's children and SIGKILL it
  (and optionally other processes) the moment it runs a kernel write
  (``ipset restore`` / ``iptables-restore``): a crash in the middle of an
  apply, not before or after it;
* :class:`Partition` -- cut one node's network path to the control
  namespace (API emulator and controller), both directions, silently
  (DROP in the ``raw`` table, which the agent does not touch) or with
  REJECT in ``filter``, next to the agent's hooks.  Pod traffic
  does not use the control address and keeps flowing;
* :func:`arm` -- the API emulator's fault endpoints
  (``/_emulator/faults/...``);
* :func:`write_retrying` -- write objects through an API that is being
  faulted (retry 5xx, non-JSON 502s and timeouts until accepted).

Everything acts inside lab namespaces only; nothing is added to the
machine's own namespace.  It does not probe and does not judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from typing import Any

import aiohttp

from stockade.cases import ObjectOp
from stockade.lab.pipeline import Pipeline, PipelineError
from stockade.lab.processes import LabProcess
from stockade.lab.topology import CONTROL_IP


async def kill9(pipe: Pipeline, lp: LabProcess) -> None:
    """SIGKILL ``lp`` (by its PID) and reap it; the lab forgets it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(lp.pid, signal.SIGKILL)
    await pipe.lab.stop_process(lp)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            continue
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [x.decode(errors="replace") for x in f.read().split(b"\0") if x]
    except OSError:
        return []


def _writing_child(pid: int, tool: str) -> tuple[int, list[str]] | None:
    """(PID, argv) of a child of ``pid`` that writes the kernel (an ``ipset
    restore`` or ``iptables-*-restore``) with ``tool`` in its program name."""
    for c in _children(pid):
        argv = _cmdline(c)
        if argv and tool in os.path.basename(argv[0]) and any("restore" in a for a in argv):
            return c, argv
    return None


def _kill_on_write(agent_pid: int, tool: str, after: float, victims: list[int], timeout: float,
                   stop: threading.Event, killed: list[int]) -> list[str] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        found = _writing_child(agent_pid, tool)
        if found is not None and after > 0:
            time.sleep(after)
            if found[0] not in _children(agent_pid):
                continue  # that write is over already: wait for another one
        if found is not None:
            argv = found[1]
            for pid in victims:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)  # it was alive and got the signal
            return argv
        time.sleep(0.0005)
    return None


class KillOnApply:
    """Arm before triggering the change: a thread polls ``/proc`` for the
    ``agent``'s kernel-write child (``tool``: "ipset" or "iptables") and
    SIGKILLs every one of ``victims``
    (the agent itself, the controller, or both) as soon as one exists.
    :meth:`result` returns the write's argv that was running, or None when
    no write started within ``timeout`` (then nothing was killed);
    ``killed`` lists the PIDs that were alive and got the signal.

    (The exit status is no proof of the kill: asyncio's child watcher may
    report 255 for a child it found already reaped.)"""

    def __init__(self, agent: LabProcess, victims: Iterable[LabProcess], tool: str = "ipset",
                 after: float = 0.0, timeout: float = 20.0) -> None:
        self.agent = agent
        self.victims = list(victims)
        self._stop = threading.Event()
        self.killed: list[int] = []
        self._fut: asyncio.Future[list[str] | None] = asyncio.get_running_loop().run_in_executor(
            None, _kill_on_write, agent.pid, tool, after, [p.pid for p in self.victims], timeout, self._stop, self.killed)

    async def result(self) -> list[str] | None:
        return await self._fut

    async def cancel(self) -> None:
        self._stop.set()
        await asyncio.gather(self._fut, return_exceptions=True)


# ---------------------------------------------------------------- partition

class Partition:
    """Cut everything between node namespace ``netns`` and the control
    address, both directions.  ``mode``:

    * ``"drop"``: DROP in the ``raw`` table (before conntrack, before the
      agent's ``filter`` rules): a silent black hole; open TCP streams just
      stall and resume by retransmission after the restore;
    * ``"reject"``: REJECT ``--reject-with tcp-reset`` appended to the
      ``filter`` table's INPUT and OUTPUT (after the agent's own hooks,
      which it keeps first: a rule inserted above them is a moved hook to
      the agent's kernel read-back), which the agent must leave alone.
      Measured: the open gRPC stream is blocked but not reset (it resumes
      after the restore); new connections are refused.

    :meth:`cut` and :meth:`restore` are idempotent; the namespace's
    deletion removes the rules too."""

    RULES = {
        "drop": [("raw", "OUTPUT", ["-d", "{peer}/32", "-j", "DROP"]),
                 ("raw", "PREROUTING", ["-s", "{peer}/32", "-j", "DROP"])],
        "reject": [("filter", "OUTPUT", ["-d", "{peer}/32", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"]),
                  ("filter", "INPUT", ["-s", "{peer}/32", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"])],
    }

    def __init__(self, netns: str, mode: str = "drop", peer: str = CONTROL_IP) -> None:
        if mode not in self.RULES:
            raise ValueError(f"partition mode {mode!r}: one of {sorted(self.RULES)}")
        self.netns = netns
        self.mode = mode
        self.peer = peer
        self.active = False

    def _ipt(self, op: str, table: str, chain: str, spec: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.netns, "iptables", "-w", "5", "-t", table, op, chain,
                               *[x.format(peer=self.peer) for x in spec]],
                              capture_output=True, text=True, timeout=15)

    def cut(self) -> None:
        for table, chain, spec in self.RULES[self.mode]:
            r = self._ipt("-I" if table == "raw" else "-A", table, chain, spec)
            if r.returncode != 0:
                raise RuntimeError(f"cutting {self.netns}: {r.stderr.strip()}")
        self.active = True

    def rules_present(self) -> int:
        return sum(self._ipt("-C", t, c, spec).returncode == 0 for t, c, spec in self.RULES[self.mode])

    def restore(self) -> None:
        for table, chain, spec in self.RULES[self.mode]:
            while self._ipt("-C", table, chain, spec).returncode == 0:
                r = self._ipt("-D", table, chain, spec)
                if r.returncode != 0:
                    raise RuntimeError(f"restoring {self.netns}: {r.stderr.strip()}")
        self.active = False


# ---------------------------------------------------------------- API emulator

async def arm(pipe: Pipeline, fault: str, **body: Any) -> dict[str, Any]:
    """POST ``/_emulator/faults/<fault>``; the armed faults afterwards."""
    assert pipe.kube is not None
    status, data = await pipe.kube.request("POST", f"/_emulator/faults/{fault}", body)
    if status != 200:
        raise PipelineError(f"arming {fault}: HTTP {status}: {data}")
    return data


async def armed(pipe: Pipeline) -> dict[str, Any]:
    assert pipe.kube is not None
    status, data = await pipe.kube.request("GET", "/_emulator/faults")
    if status != 200:
        raise PipelineError(f"faults: HTTP {status}")
    return data


MARKER = "faults-marker"
_marks = 0


def marker_policy() -> ObjectOp:
    """A policy selecting no pod (it changes no node's state) whose every
    write is a NetworkPolicy event: see :func:`write_retrying`."""
    global _marks
    _marks += 1
    return ObjectOp("NetworkPolicy", "x", MARKER, {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": MARKER, "namespace": "x", "annotations": {"stockade.test/mark": str(_marks)}},
        "spec": {"podSelector": {"matchLabels": {"stockade.test/selects": "nothing"}}, "policyTypes": ["Ingress"]}})


async def write_retrying(pipe: Pipeline, ops: list[ObjectOp], concurrency: int = 8,
                         deadline: float = 60.0) -> tuple[dict[str, int], int]:
    """Write ``ops`` (each object's ops in order, objects concurrently)
    through an API that may answer 5xx, HTML 502, or stall; every op is
    retried until accepted.  Returns (highest resourceVersion per kind,
    retries needed).

    A policy DELETE answers a ``Status`` without a resourceVersion, and the
    lab's client then takes the list's, which with concurrent writers can
    be a later write of *another* kind: the controller's policy watch only
    reaches it at its next event or bookmark (up to a minute).  So deletes
    contribute no version; a batch with deletes ends with a write of
    :func:`marker_policy`, whose version is a NetworkPolicy event after
    every delete of the batch."""
    assert pipe.kube is not None
    kube = pipe.kube
    by_obj: dict[tuple[str, str, str], list[ObjectOp]] = {}
    for op in ops:
        by_obj.setdefault((op.kind, op.namespace, op.name), []).append(op)
    seen: dict[str, int] = {}
    retries = 0
    sem = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline

    async def one(op: ObjectOp) -> None:
        nonlocal retries
        while True:
            try:
                rv = await kube.apply(op)
                if rv is not None and not op.is_delete:
                    seen[op.kind] = max(seen.get(op.kind, 0), rv)
                return
            except (PipelineError, aiohttp.ClientError, TimeoutError) as e:
                if isinstance(e, PipelineError) and "HTTP 4" in str(e) and "HTTP 429" not in str(e):
                    raise  # our own mistake, not a fault
                retries += 1
                if loop.time() > end:
                    raise
                await asyncio.sleep(0.05)

    async def chain(seq: list[ObjectOp]) -> None:
        for op in seq:
            async with sem:
                await one(op)

    await asyncio.gather(*(chain(seq) for seq in by_obj.values()))
    if any(op.is_delete for op in ops):
        await chain([marker_policy()])
    return seen, retries
