"""A lab cluster's lifetime: build the namespaces, wire pods, serve, tear down.

:class:`Lab` owns one run: its run state (``stockade.lab.runstate``), the
base topology (``topology.LabPlan``), the pods and outside hosts with their
echo servers, the sockets parked in its namespaces, and every process it
started.  :meth:`Lab.down` removes all of it and is safe to call at any
point, also half-way through :meth:`Lab.up` and more than once.

It does not talk to Kubernetes or to the Stockade pipeline (see
``stockade.lab.pipeline``) and it decides no addresses (the case address
plan does).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from stockade.lab import netns, processes
from stockade.lab.nssocket import NsSockets, gratuitous_arp
from stockade.lab.prober import DEFAULT_TIMEOUT, Probe, Prober
from stockade.lab.processes import LabProcess
from stockade.lab.runstate import RunState
from stockade.lab.topology import External, LabPlan, Mode, PodWiring, check_ifnames


def new_runid() -> str:
    return secrets.token_hex(3)


@dataclass
class Lab:
    nodes: int
    mode: Mode = "bridged"
    externals: tuple[External, ...] = ()
    runid: str = field(default_factory=new_runid)
    probe_timeout: float = DEFAULT_TIMEOUT
    keep_logs: bool = False  # copy process logs to /tmp/stockade-lab-logs/<runid> on teardown

    def __post_init__(self) -> None:
        self.plan = LabPlan(self.runid, self.mode, self.nodes, self.externals)
        self.state = RunState(self.runid)
        self.socks = NsSockets()
        self.prober = Prober(self.socks, self.probe_timeout)
        self.pods: dict[str, PodWiring] = {}  # "ns/name" -> wiring
        self.servers: dict[str, LabProcess] = {}  # pod key or "external:NAME" -> its echo server
        self.procs: list[LabProcess] = []  # other processes (pipeline), in start order
        self._next_index = 0
        self._down = False
        self._inflight: set[asyncio.Future[object]] = set()  # namespace commands still running in threads

    async def _io(self, fn: Callable[..., object], *args: object) -> None:
        """Run a blocking namespace command in a thread.  A cancelled caller
        does not stop the thread; :meth:`down` waits for every command still
        running, so nothing is created after the teardown deleted it."""
        fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)
        await asyncio.shield(fut)

    # ---- build
    async def up(self) -> None:
        names = self.plan.base_namespaces()
        self.state.add_namespaces(names)  # recorded before they exist: a crash leaves a trail
        os.makedirs(self.state.workdir, exist_ok=True)
        phases = self.plan.base_batches()
        check_ifnames(phases)
        await self._io(netns.ensure_br_netfilter)
        await self._io(netns.add_namespaces, names)
        await self._io(netns.run_phases, phases)

    async def add_pod(self, key: str, node: int, ip: str, host_network: bool,
                      ports: list[tuple[int, str]]) -> PodWiring:
        """Wire a pod and start its echo server (ready before this returns)."""
        if key in self.pods:
            raise ValueError(f"pod {key} exists already")
        index = self._next_index
        self._next_index += 1
        pod = self.plan.pod(key, index, node, ip, host_network)
        if not host_network:
            self.state.add_namespaces([pod.netns])
            phases = self.plan.pod_batches(pod)
            check_ifnames(phases)
            await self._io(netns.add_namespaces, [pod.netns])
            await self._io(netns.run_phases, phases)
            await self.socks.run(pod.netns, lambda: gratuitous_arp("eth0", pod.ip))
        self.pods[key] = pod
        if ports:
            bind = pod.ip if host_network else None
            self.servers[key] = await processes.start(
                self.state, f"pod-{pod.index}", pod.netns, processes.podserver_argv(ports, bind), ready="ready")
        return pod

    async def remove_pod(self, key: str) -> PodWiring:
        pod = self.pods.pop(key)
        srv = self.servers.pop(key, None)
        if srv is not None:
            await processes.stop(self.state, srv)
        if not pod.host_network:
            self.socks.forget(pod.netns)
            await self._io(netns.run_phases, self.plan.unwire_batches(pod))
            await self._io(netns.delete_namespaces, [pod.netns])
            self.state.namespaces.remove(pod.netns)
            self.state.save()
        return pod

    async def serve_external(self, name: str, ports: list[tuple[int, str]]) -> None:
        if not ports:
            return
        self.servers[f"external:{name}"] = await processes.start(
            self.state, f"external-{name}", self.plan.external_ns_by_name(name),
            processes.podserver_argv(ports), ready="ready")

    async def start_process(self, name: str, namespace: str, argv: list[str],
                            ready: str | None = None, timeout: float = processes.READY_TIMEOUT) -> LabProcess:
        lp = await processes.start(self.state, name, namespace, argv, ready, timeout)
        self.procs.append(lp)
        return lp

    async def stop_process(self, lp: LabProcess) -> int | None:
        rc = await processes.stop(self.state, lp)
        if lp in self.procs:
            self.procs.remove(lp)
        return rc

    # ---- addressing and probing
    def address(self, target: str) -> str:
        if target.startswith("external:"):
            name = target.split(":", 1)[1]
            for x in self.externals:
                if x.name == name:
                    return x.ip
            raise KeyError(target)
        return self.pods[target].ip

    def source(self, origin: str) -> tuple[str, str | None]:
        """(namespace, source address to bind or None) for a probe's ``from``."""
        if origin.startswith("external:"):
            return self.plan.external_ns_by_name(origin.split(":", 1)[1]), None
        pod = self.pods[origin]
        return pod.netns, (pod.ip if pod.host_network else None)

    def probe_of(self, origin: str, target: str, port: int, protocol: str) -> Probe:
        ns, src = self.source(origin)
        return Probe(ns, self.address(target), port, protocol, src)

    # ---- teardown
    async def down(self) -> None:
        """Stop every process (pipeline first, then echo servers), release
        the namespaces, delete them and the run state."""
        if self._down:
            return
        self._down = True
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        errors: list[BaseException] = []
        for lp in reversed(self.procs):
            try:
                await processes.stop(self.state, lp)
            except BaseException as e:  # keep tearing down
                errors.append(e)
        self.procs.clear()
        await asyncio.gather(*(processes.stop(self.state, s) for s in self.servers.values()),
                             return_exceptions=True)
        self.servers.clear()
        self.down_sync()
        for err in errors:
            print(f"lab teardown: stopping a process failed: {type(err).__name__}: {err}", file=sys.stderr)

    def down_sync(self) -> None:
        """The part of teardown that needs no event loop (also used on a
        second Ctrl-C): kill recorded PIDs, release sockets, delete."""
        self._down = True
        netns.kill_pids(self.state.processes)
        self.socks.close()
        netns.delete_namespaces(self.state.namespaces + netns.list_namespaces(self.plan.prefix + "-"))
        logs = os.path.join(self.state.workdir, "logs")
        if self.keep_logs and os.path.isdir(logs):
            dest = os.path.join("/tmp/stockade-lab-logs", self.runid)
            shutil.copytree(logs, dest, dirs_exist_ok=True)
            print(f"lab logs kept in {dest}", file=sys.stderr)
        self.state.remove()
