"""The I/O that creates and destroys lab network namespaces.

Runs the plans of ``stockade.lab.topology``: ``ip -batch`` to add and delete
namespaces, ``ip -n NS -batch -`` per namespace for links, addresses and
routes (the batches of one phase run concurrently), and ``sysctl`` inside a
namespace through ``ip netns exec``.  Also enters a namespace from a thread
(``setns``) so the runner can open sockets that live inside the lab.

Deliberately synchronous (plain ``subprocess``): teardown must also work
from ``finally`` blocks and ``stockade lab clean`` without an event loop.
It never touches the machine's own namespace except to add and remove the
``/run/netns`` entries of the namespaces it creates.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterable

from stockade.lab.topology import NS_PREFIX, Batch

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
IP = "ip"
COMMAND_TIMEOUT = 20.0


class NetnsError(RuntimeError):
    """A command that builds the lab failed (the message has its stderr)."""


def _check(proc: subprocess.Popen[bytes], what: str, stdin: bytes | None = None) -> None:
    try:
        _, err = proc.communicate(stdin, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise NetnsError(f"{what}: timed out") from None
    if proc.returncode != 0:
        raise NetnsError(f"{what}: exit {proc.returncode}: {err.decode(errors='replace').strip()}")


def add_namespaces(names: Iterable[str]) -> None:
    lines = "".join(f"netns add {n}\n" for n in names).encode()
    if lines:
        p = subprocess.Popen([IP, "-batch", "-"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        _check(p, "ip netns add", lines)


def run_phases(phases: list[list[Batch]]) -> None:
    """Run each phase's batches concurrently; phases in order.  Sysctls of a
    batch are written after its ``ip`` lines (they may name new links)."""
    for phase in phases:
        procs: list[tuple[subprocess.Popen[bytes], str, bytes]] = []
        for b in phase:
            if b.ip_lines:
                p = subprocess.Popen([IP, "-n", b.netns, "-batch", "-"], stdin=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
                procs.append((p, f"ip -n {b.netns} -batch", "".join(x + "\n" for x in b.ip_lines).encode()))
        errors: list[str] = []
        for p, what, data in procs:
            try:
                _check(p, what, data)
            except NetnsError as e:
                errors.append(str(e))
        if errors:
            raise NetnsError("; ".join(errors))
        sysprocs = []
        for b in phase:
            if b.sysctls:
                args = [IP, "netns", "exec", b.netns, "sysctl", "-q", "-w"] + [f"{k}={v}" for k, v in b.sysctls]
                sysprocs.append((subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
                                 f"sysctl in {b.netns}"))
        for p, what in sysprocs:
            try:
                _check(p, what)
            except NetnsError as e:
                errors.append(str(e))
        if errors:
            raise NetnsError("; ".join(errors))


def ensure_br_netfilter() -> None:
    """Make bridged traffic visible to iptables: load ``br_netfilter`` (a
    host-wide module load; built into some kernels) so that every
    namespace has ``net.bridge.bridge-nf-call-iptables``.  The setting
    itself is made per node namespace by the topology."""
    if os.path.isdir("/proc/sys/net/bridge"):
        return
    r = subprocess.run(["modprobe", "br_netfilter"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if not os.path.isdir("/proc/sys/net/bridge"):
        raise NetnsError(f"br_netfilter is not available (modprobe: {r.stderr.strip() or r.returncode}); "
                         "bridged traffic would bypass iptables (try --mode routed)")


def list_namespaces(prefix: str = NS_PREFIX) -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def pids_in(namespace: str) -> list[int]:
    """Processes whose network namespace is ``namespace`` (``ip netns pids``)."""
    r = subprocess.run([IP, "netns", "pids", namespace], capture_output=True, timeout=COMMAND_TIMEOUT)
    return [int(x) for x in r.stdout.split() if x.isdigit()]


def kill_pids(pids: Iterable[int], grace: float = 2.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; by PID only."""
    alive = []
    for pid in set(pids):
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, signal.SIGTERM)
            alive.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _exists(p)]
        if alive:
            time.sleep(0.02)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _exists(pid: int) -> bool:
    try:
        # a zombie child of ours still "exists"; reap it if it is ours
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return False
        except ChildProcessError:
            pass
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def delete_namespaces(names: Iterable[str]) -> list[str]:
    """Kill what still runs inside, then delete the namespaces.  Returns the
    names that were deleted.  Missing namespaces are ignored."""
    names = [n for n in names if os.path.exists(os.path.join(NETNS_DIR, n))]
    if not names:
        return []
    pids: list[int] = []
    for n in names:
        pids += pids_in(n)
    kill_pids(pids)
    lines = "".join(f"netns del {n}\n" for n in names).encode()
    p = subprocess.Popen([IP, "-force", "-batch", "-"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.communicate(lines, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    return names


_libc = ctypes.CDLL(None, use_errno=True)


def enter(namespace: str) -> None:
    """Move the *calling thread* into ``namespace`` (setns).  Use it only in
    a thread dedicated to that namespace: sockets the thread creates live
    there for good, wherever they are used later."""
    fd = os.open(os.path.join(NETNS_DIR, namespace), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns({namespace}): {os.strerror(e)}")
    finally:
        os.close(fd)
