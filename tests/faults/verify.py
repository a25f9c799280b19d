"""Is the lab's final state *exactly* the desired one, on every node?

Three independent witnesses per node, all required to agree with the
controller's desired digest (``/api/v1/status``):

1. the controller's own record of what the agent acknowledged
   (``applied_digest``);
2. the agent itself (``/healthz`` on the node's address, port 7703);
3. the kernel: the agent's persisted state must have the desired digest,
   and the node namespace's ``ipset``/``iptables`` read back through the
   agent's own parser must need no write to equal it
   (``make_plan(saved, kernel).is_empty()``).

Plus process figures for the memory/descriptor checks: RSS and open file
descriptors of a PID from ``/proc``.  Read-only: nothing here writes.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any

from nodeagent import state_store
from nodeagent.backend_detect import resolve
from nodeagent.dataplane import read_view
from nodeagent.kernel import SubprocessKernel, Tools
from nodeagent.plan import make_plan
from stockade.case_addresses import node_ip, node_name
from stockade.lab.nssocket import http_get
from stockade.lab.pipeline import Pipeline
from stockade.lab.processes import AGENT_HTTP, CONTROLLER_HTTP
from stockade.lab.topology import CONTROL_IP
from stockade.state import digest


class NotExact(AssertionError):
    """A node's enforced state differs from the desired one (says where)."""


async def agent_digest(pipe: Pipeline, i: int) -> str:
    code, body = await http_get(pipe.lab.socks, pipe.lab.plan.node_ns(i), node_ip(i), AGENT_HTTP, "/healthz")
    if code != 200:
        raise NotExact(f"agent {node_name(i)} /healthz: HTTP {code}")
    return str(json.loads(body).get("digest", ""))


async def kernel_matches(pipe: Pipeline, i: int, want: str) -> str:
    """"" when node ``i``'s kernel holds exactly the state of digest
    ``want``; else why not."""
    saved = state_store.load(os.path.join(pipe.workdir, f"agent-{node_name(i)}"))
    if saved is None:
        return "no saved state"
    if digest(saved) != want:
        return f"saved state digest {digest(saved)[:12]} != desired {want[:12]}"
    kernel = SubprocessKernel(("ip", "netns", "exec", pipe.lab.plan.node_ns(i)))
    det = await resolve(kernel, "auto")
    tools = Tools("legacy" if det.flavour in ("legacy", "python-iptables") else "nft")
    plan = make_plan(saved, await read_view(kernel, tools, 20.0))
    return "" if plan.is_empty() else f"kernel differs from the desired state: {plan.summary()}"


async def exact(pipe: Pipeline, timeout: float = 10.0) -> dict[str, str]:
    """Node name -> digest, once every witness agrees on every node
    (call after ``wait_converged``; the agent persists its state shortly
    after acknowledging, so this polls up to ``timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        why, out = await _check(pipe)
        if not why:
            return out
        if loop.time() > deadline:
            raise NotExact(why)
        await asyncio.sleep(0.1)


async def _check(pipe: Pipeline) -> tuple[str, dict[str, str]]:
    st = await pipe.status()
    rows = {n["node"]: n for n in st.get("nodes", [])}
    out: dict[str, str] = {}
    for i in range(pipe.lab.nodes):
        name = node_name(i)
        row = rows.get(name)
        if row is None:
            return f"{name}: not in the controller's status", out
        want = str(row.get("desired_digest") or "")
        if not want or row.get("applied_digest") != want:
            return f"{name}: controller says applied {str(row.get('applied_digest'))[:12]}, desired {want[:12]}", out
        got = await agent_digest(pipe, i)
        if got != want:
            return f"{name}: agent says {got[:12]}, desired {want[:12]}", out
        why = await kernel_matches(pipe, i, want)
        if why:
            return f"{name}: {why}", out
        out[name] = want
    return "", out


def desired_digests(st: dict[str, Any]) -> dict[str, str]:
    return {n["node"]: str(n.get("desired_digest") or "") for n in st.get("nodes", [])}


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for PID {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def wait_status(pipe: Pipeline, why_not: Callable[[dict[str, Any]], str], timeout: float = 30.0) -> dict[str, Any]:
    """Poll ``/api/v1/status`` until ``why_not(status)`` is "" (the status);
    raises TimeoutError with the last reason."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    why = "no status yet"
    while loop.time() < deadline:
        try:
            st = await pipe.status()
        except (OSError, TimeoutError, ValueError) as e:
            why = f"status: {e}"
        else:
            why = why_not(st)
            if not why:
                return st
        await asyncio.sleep(0.05)
    raise TimeoutError(why)


def node_row(st: dict[str, Any], node: str) -> dict[str, Any]:
    for n in st.get("nodes", []):
        if n.get("node") == node:
            return dict(n)
    return {}


async def explain(pipe: Pipeline, src: str, dst: str, port: int = 80) -> str:
    """The controller's spec-level oracle (``/api/v1/explain``) on its
    current model: "allow" or "deny"."""
    code, body = await http_get(pipe.lab.socks, pipe.lab.plan.control_ns, CONTROL_IP, CONTROLLER_HTTP,
                                f"/api/v1/explain?from={src}&to={dst}&port={port}&protocol=TCP")
    if code != 200:
        raise NotExact(f"explain {src} -> {dst}: HTTP {code}: {body[:200]!r}")
    return str(json.loads(body)["verdict"])


async def packets_match_oracle(pipe: Pipeline, pods: list[str], port: int = 80) -> tuple[int, list[str]]:
    """Probe every ordered pair of ``pods`` with real packets and compare
    with the oracle: (pairs checked, mismatches)."""
    pairs = [(s, d) for s in pods for d in pods if s != d]
    verdicts = [await explain(pipe, s, d, port) for s, d in pairs]
    outs = await pipe.lab.prober.probe_all([pipe.lab.probe_of(s, d, port, "TCP") for s, d in pairs])
    bad = [f"{s} -> {d}: oracle {v}, packets {o.observed or o.error}"
           for (s, d), v, o in zip(pairs, verdicts, outs, strict=True) if o.observed != v]
    return len(pairs), bad
