"""``stockade demo``: a 3-node lab cluster enforcing the policy recipes, live.

Builds a lab (``stockade.lab.cluster``) of three nodes and an outside host,
runs the real pipeline in it (``stockade.lab.pipeline``: API emulator,
controller with its status page, one agent per node; their channel TLS
with agent tokens as in a real cluster, plaintext with ``--insecure-grpc``),
then takes the
recipe cases (packaged in ``stockade.lab.recipes``) one after another: it
creates the recipe's namespaces and pods, prints the reachability matrix
(real packets), applies the recipe's policies, waits -- with a progress
line -- until every agent acknowledged them, prints the matrix again and
checks the recipe's own probes.  Then, unless ``--no-wait``, it stays up:
the status page and the API are port-forwarded to 127.0.0.1 (no route or
address is added to the machine), a kubeconfig for ``kubectl`` is written,
and the matrix of the last recipe's pods is re-probed every few seconds and
printed whenever it changes -- apply your own policies and watch.  Ctrl-C
(or SIGTERM) tears everything down.

Presentation and orchestration only: addresses and objects come from
``stockade.cases``, every verdict from the pipeline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import json
import os
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from stockade import cases
from stockade.cases import Case, ObjectOp, ProbeResult, Stage
from stockade.lab import matrix, processes
from stockade.lab.cluster import Lab
from stockade.lab.pipeline import Pipeline, local_kubeconfig
from stockade.lab.portforward import PortForward
from stockade.lab.runner import KEPT_NAMESPACES, apply_ops, external_ports, result
from stockade.lab.topology import External, Mode

T = TypeVar("T")


def out(text: str = "") -> None:
    """Print a display line; a closed stdout (``| head``) must never stop
    the teardown, so write errors are ignored."""
    try:
        print(text, flush=True)
    except (BrokenPipeError, OSError):
        pass


async def with_progress(label: str, work: Awaitable[T]) -> T:
    """Await ``work`` while showing a live line (a spinner on a terminal,
    a start and an end line otherwise)."""
    tty = sys.stdout.isatty()
    task = asyncio.ensure_future(work)
    t0 = time.monotonic()
    frames = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
    i = 0
    if not tty:
        out(f"  … {label}")
    while not task.done():
        if tty:
            with contextlib.suppress(OSError):
                sys.stdout.write(f"\r  {frames[i % len(frames)]} {label} {time.monotonic() - t0:5.2f} s")
                sys.stdout.flush()
            i += 1
        await asyncio.wait([task], timeout=0.1)
    took = time.monotonic() - t0
    if tty:
        with contextlib.suppress(OSError):
            sys.stdout.write("\r\033[K")
    ok = not task.cancelled() and task.exception() is None
    out(f"  {'✔' if ok else '✘'} {label} ({took:.2f} s)")
    return task.result()


async def listen_forward(pipe: Pipeline, port: int, want: int) -> PortForward:
    """A port-forward on 127.0.0.1:``want``, or any free port if taken."""
    try:
        return await pipe.forward(port, listen_port=want)
    except OSError as e:
        if e.errno != errno.EADDRINUSE or want == 0:
            raise
        return await pipe.forward(port, listen_port=0)


@dataclasses.dataclass
class Recipe:
    case: Case
    stages: list[Stage]

    def sources(self, lab: Lab) -> list[str]:
        return [k for k in lab.pods] + [f"external:{x.name}" for x in self.case.external]

    def targets(self, lab: Lab) -> dict[str, tuple[int, str]]:
        t: dict[str, tuple[int, str]] = {}
        for k, pod in ((p.key, p) for p in self.case.pods):
            if k in lab.pods and pod.ports:
                t[k] = (pod.ports[0].port, pod.ports[0].protocol)
        for name, ports in external_ports(self.case, self.stages).items():
            if ports:
                t[f"external:{name}"] = ports[0]
        return t


class Demo:
    def __init__(self, recipes: list[Recipe], nodes: int, mode: Mode, probe_timeout: float,
                 insecure: bool = False) -> None:
        self.recipes = recipes
        ext: dict[str, str] = {}
        for r in recipes:
            for x in r.case.external:
                ext.setdefault(x.name, x.ip)
        self.lab = Lab(nodes, mode, tuple(External(n, ip) for n, ip in ext.items()), probe_timeout=probe_timeout)
        self.pipe = Pipeline(self.lab, insecure=insecure)
        self.policies: set[tuple[str, str]] = set()
        self.namespaces: set[str] = set()
        self.results: list[tuple[str, int, int]] = []

    async def start(self, status_port: int, api_port: int) -> tuple[PortForward, PortForward, str]:
        lab = self.lab
        out(f"Building a {lab.nodes}-node lab ({lab.mode}) in network namespaces {lab.plan.prefix}-* ...")
        await with_progress("namespaces, bridges, routes", lab.up())
        ports: dict[str, set[tuple[int, str]]] = {}
        for r in self.recipes:
            for name, ps in external_ports(r.case, r.stages).items():
                ports.setdefault(name, set()).update(ps)
        await asyncio.gather(*(lab.serve_external(n, sorted(p)) for n, p in ports.items()))
        channel = "plaintext channel" if self.pipe.insecure else "TLS channel, agent tokens"
        await with_progress(f"API emulator, controller, agents ({channel})", self.pipe.start())
        status = await listen_forward(self.pipe, processes.CONTROLLER_HTTP, status_port)
        api = await listen_forward(self.pipe, processes.EMULATOR_PORT, api_port)
        assert self.pipe.kubeconfig is not None
        kc = os.path.join(self.pipe.workdir, "kubeconfig-local")
        with open(kc, "w") as f:
            f.write(local_kubeconfig(self.pipe.kubeconfig, api.local))
        nodes = [ObjectOp("Node", "", cases.node_name(i), cases.node_object(i)) for i in range(lab.nodes)]
        seen = await self.pipe.write(nodes)
        await with_progress("agents connected and in sync", self.pipe.wait_converged(seen))
        out(f"Status page: http://{status.local}/   (JSON: http://{status.local}/api/v1/status)")
        return status, api, kc

    def _track(self, ops: list[ObjectOp]) -> None:
        for op in ops:
            if op.kind == "NetworkPolicy":
                (self.policies.discard if op.is_delete else self.policies.add)((op.namespace, op.name))
            elif op.kind == "Namespace" and not op.is_delete:
                self.namespaces.add(op.name)

    async def apply(self, ops: list[ObjectOp], label: str) -> None:
        async def go() -> None:
            seen = await apply_ops(self.lab, self.pipe, ops)
            self._track(ops)
            await self.pipe.wait_converged(seen)
        await with_progress(label, go())

    async def show_matrix(self, r: Recipe, title: str) -> dict[tuple[str, str], str | None]:
        srcs, tgts = r.sources(self.lab), r.targets(self.lab)
        cs = matrix.cells(srcs, tgts)
        outs = await self.lab.prober.probe_all([self.lab.probe_of(c.src, c.dst, c.port, c.protocol) for c in cs])
        obs: dict[tuple[str, str], str | None] = {(c.src, c.dst): o.observed for c, o in zip(cs, outs, strict=True)}
        out(matrix.render(srcs, tgts, obs, title))
        return obs

    async def check(self, stage: Stage) -> list[ProbeResult]:
        outs = await self.lab.prober.probe_all([self.lab.probe_of(p.src, p.dst, p.port, p.protocol)
                                                for p in stage.probes])
        res = [result(stage.step, p, o) for p, o in zip(stage.probes, outs, strict=True)]
        for x in res:
            mark = "PASS" if x.passed else "FAIL"
            extra = f"  ({x.error})" if x.error else ""
            out(f"    {mark}  {x.probe.src} -> {x.probe.dst}:{x.probe.port}/{x.probe.protocol}  "
                f"expect {x.probe.expect}, observed {x.observed}{extra}")
        return res

    async def run_recipe(self, n: int, r: Recipe) -> None:
        c = r.case
        out()
        out(f"━━ [{n}/{len(self.recipes)}] {c.name}")
        if c.source:
            out(f"   from {c.source}")
        first = [op for op in r.stages[0].ops if op.kind != "Node"]
        objects = [op for op in first if op.kind != "NetworkPolicy"]
        policies = [op for op in first if op.kind == "NetworkPolicy"]
        await self.apply(objects, f"namespaces and {sum(op.kind == 'Pod' for op in objects)} pods")
        await self.show_matrix(r, "  before (no policy):")
        for op in policies:
            spec = json.dumps((op.obj or {}).get("spec"), separators=(",", ":"))
            out(f"  policy {op.namespace}/{op.name}: {spec if len(spec) <= 150 else spec[:147] + '...'}")
        names = ", ".join(f"{op.namespace}/{op.name}" for op in policies)
        await self.apply(policies, f"policies {names}: agents acknowledged")
        await self.show_matrix(r, "  after:")
        results = await self.check(r.stages[0])
        for st in r.stages[1:]:
            out(f"  step: {st.step}")
            await self.apply(list(st.ops), "applied and acknowledged")
            await self.show_matrix(r, "  after the step:")
            results += await self.check(st)
        passed = sum(x.passed for x in results)
        self.results.append((c.name, passed, len(results) - passed))

    async def clear(self) -> None:
        """Remove the current recipe's policies, pods and namespaces."""
        ops = [ObjectOp("NetworkPolicy", ns, name, None) for ns, name in sorted(self.policies)]
        ops += [ObjectOp("Pod", k.split("/", 1)[0], k.split("/", 1)[1], None) for k in sorted(self.lab.pods)]
        ops += [ObjectOp("Namespace", "", ns, None) for ns in sorted(self.namespaces) if ns not in KEPT_NAMESPACES]
        self.namespaces &= KEPT_NAMESPACES
        await self.apply(ops, "previous recipe removed")

    async def watch(self, r: Recipe, interval: float = 3.0) -> None:
        """Re-probe the last recipe's matrix; print it when it changes."""
        last: dict[tuple[str, str], str | None] | None = None
        while True:
            srcs, tgts = r.sources(self.lab), r.targets(self.lab)
            cs = matrix.cells(srcs, tgts)
            outs = await self.lab.prober.probe_all([self.lab.probe_of(c.src, c.dst, c.port, c.protocol)
                                                    for c in cs])
            obs: dict[tuple[str, str], str | None] = {(c.src, c.dst): o.observed
                                                      for c, o in zip(cs, outs, strict=True)}
            if obs != last:
                out(matrix.render(srcs, tgts, obs, f"  live matrix ({time.strftime('%H:%M:%S')}):"))
                last = obs
            await asyncio.sleep(interval)


def load_recipes(folder: str | None, only: str | None, nodes: int) -> list[Recipe]:
    from stockade.lab import recipes

    path = Path(folder) if folder else recipes.directory()
    out_: list[Recipe] = []
    for c in cases.load([path]):
        if only and only not in c.name:
            continue
        c = dataclasses.replace(c, nodes=nodes)  # spread the recipe's pods over the demo's nodes
        out_.append(Recipe(c, cases.case_stages(c)))
    return out_


async def run_demo(args: argparse.Namespace) -> int:
    recipes = load_recipes(args.recipes, args.only, args.nodes)
    if not recipes:
        out("stockade demo: no recipe matched")
        return 2
    demo = Demo(recipes, args.nodes, args.mode, args.probe_timeout, getattr(args, "insecure_grpc", False))
    demo.lab.keep_logs = args.keep_logs
    try:
        status, _api, kc = await demo.start(args.status_port, args.api_port)
        for n, r in enumerate(recipes, 1):
            if n > 1:
                await demo.clear()
            await demo.run_recipe(n, r)
        out()
        out("━━ summary")
        for name, p, f in demo.results:
            out(f"  {'PASS' if not f else 'FAIL'}  {name}: {p} passed, {f} failed")
        total_f = sum(f for _, _, f in demo.results)
        out(f"  {sum(p for _, p, _ in demo.results)} probes passed, {total_f} failed")
        if args.no_wait:
            return 1 if total_f else 0
        out()
        out("The lab stays up.  Ctrl-C tears it all down.")
        out(f"  status page:  http://{status.local}/")
        out(f"  kubectl:      kubectl --kubeconfig {kc} get pods -A -o wide")
        out(f"                kubectl --kubeconfig {kc} apply -f my-policy.yaml")
        out(f"  a pod shell:  ip netns exec {demo.lab.plan.pod_ns(0)} bash   (pod namespaces: "
            f"{demo.lab.plan.prefix}-p*)")
        await demo.watch(recipes[-1])
        return 0
    finally:
        out("Tearing the lab down ...")
        try:
            await demo.pipe.close()
        finally:
            await demo.lab.down()
        out("Lab removed.")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="stockade demo", description="A 3-node lab cluster (network namespaces, real emulator, controller and agents) enforcing the network policy recipes one after another, then staying up for your own policies (Ctrl-C tears it down).")
    ap.add_argument("--no-wait", action="store_true", help="run the recipes, then tear down and exit")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--mode", choices=("bridged", "routed"), default="bridged")
    ap.add_argument("--recipes", metavar="DIR", help="case folder (default: the packaged recipes)")
    ap.add_argument("--only", metavar="TEXT", help="only recipes whose name contains TEXT")
    ap.add_argument("--probe-timeout", type=float, default=1.0)
    ap.add_argument("--keep-logs", action="store_true", help="copy process logs to /tmp/stockade-lab-logs/RUNID")
    ap.add_argument("--insecure-grpc", action="store_true",
                    help="plaintext controller-agent channel without agent tokens (default: TLS + tokens)")
    ap.add_argument("--status-port", type=int, default=processes.CONTROLLER_HTTP,
                    help="127.0.0.1 port for the status page (default 7701; any free port if taken)")
    ap.add_argument("--api-port", type=int, default=processes.EMULATOR_PORT,
                    help="127.0.0.1 port for the API emulator (default 6443; any free port if taken)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("stockade demo: needs root (network namespaces)", file=sys.stderr)
        return 2
    from stockade.lab.cli import run_cancellable

    try:
        return run_cancellable(lambda: run_demo(args))
    except asyncio.CancelledError:
        return 130
