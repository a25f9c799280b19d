"""``stockade lab run``: policy cases against the real pipeline, real packets.

For each case (``stockade.cases`` loads it and lays out its stages and
address plan): build a lab (``cluster.Lab``) with the case's nodes and
outside hosts, start every pod's echo server *before* the pod exists at the
API, start the emulator, controller and agents (``pipeline.Pipeline``),
then per stage: write the stage's objects to the emulator in order (a new
pod is wired first, a deleted pod is unwired after its deletion), wait for
the agents' acknowledgement of the result, and run the stage's probes
concurrently (``prober``).  The lab is torn down after every case, also on
failure and on Ctrl-C/SIGTERM (the CLI turns those into cancellation).

Output: the result document of ``shared/cases/FORMAT.md`` with mode
``lab`` on stdout; progress on stderr.  Exit 0 all probes matched, 1 some
did not (a probe that could not run, or a case whose lab failed, counts as
failed and carries ``error``), 2 some case file was unusable (the others
still run).

It writes no policy logic of its own: what is allowed is decided by the
pipeline only.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from typing import Any

from stockade import cases
from stockade.cases import Case, CaseError, CaseResult, ObjectOp, ProbeResult, Stage
from stockade.lab.cluster import Lab
from stockade.lab.pipeline import Pipeline
from stockade.lab.prober import Outcome
from stockade.lab.topology import External, Mode


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pod_wiring(obj: dict[str, Any]) -> tuple[str, int, str, bool, list[tuple[int, str]]]:
    """(key, node index, IP, hostNetwork, ports) of a pod object built by
    ``stockade.cases.pod_object``."""
    meta, spec, status = obj["metadata"], obj["spec"], obj.get("status") or {}
    node = int(str(spec["nodeName"]).rsplit("-", 1)[1])
    ports = [(int(p["containerPort"]), str(p.get("protocol", "TCP")))
             for c in spec.get("containers", []) for p in c.get("ports") or []]
    return (f"{meta['namespace']}/{meta['name']}", node, str(status.get("podIP", "")),
            bool(spec.get("hostNetwork")), ports)


def external_ports(case: Case, stages: list[Stage]) -> dict[str, list[tuple[int, str]]]:
    """Every port an outside host must serve: its own list plus every port
    probed on it anywhere in the case."""
    out: dict[str, set[tuple[int, str]]] = {x.name: {(p.port, p.protocol) for p in x.ports} for x in case.external}
    for st in stages:
        for p in st.probes:
            if p.dst.startswith("external:"):
                out.setdefault(p.dst.split(":", 1)[1], set()).add((p.port, p.protocol))
    return {k: sorted(v) for k, v in out.items()}


async def apply_ops(lab: Lab, pipe: Pipeline, ops: Iterable[ObjectOp]) -> dict[str, int]:
    """Write ``ops`` in order, wiring a new pod (and starting its echo
    server) before it exists at the API and unwiring a deleted pod after
    its deletion; the highest resourceVersion written per kind."""
    seen: dict[str, int] = {}
    for op in ops:
        if op.kind == "Pod" and op.obj is not None:
            key, node, ip, host, ports = pod_wiring(op.obj)
            if key not in lab.pods:
                await lab.add_pod(key, node, ip, host, ports)
        for kind, rv in (await pipe.write([op])).items():
            seen[kind] = max(seen.get(kind, 0), rv)
        if op.kind == "Pod" and op.obj is None:
            key = f"{op.namespace}/{op.name}"
            if key in lab.pods:
                await lab.remove_pod(key)
    return seen


class CaseRun:
    """One case in one lab; :meth:`run` returns its results."""

    def __init__(self, case: Case, stages: list[Stage], mode: Mode = "bridged",
                 probe_timeout: float = 1.5) -> None:
        self.case, self.stages = case, stages
        self.lab = Lab(case.nodes, mode, tuple(External(x.name, x.ip) for x in case.external),
                       probe_timeout=probe_timeout)
        self.pipe = Pipeline(self.lab)

    async def setup(self) -> None:
        await self.lab.up()
        await asyncio.gather(*(self.lab.serve_external(name, ports)
                               for name, ports in external_ports(self.case, self.stages).items()))
        first = [op for op in self.stages[0].ops if op.kind == "Pod" and op.obj is not None]
        await asyncio.gather(*(self.lab.add_pod(*pod_wiring(op.obj)) for op in first if op.obj))
        await self.pipe.start()

    async def apply(self, ops: Iterable[ObjectOp]) -> dict[str, int]:
        return await apply_ops(self.lab, self.pipe, ops)

    async def probe(self, stage: Stage) -> list[ProbeResult]:
        outs = await self.lab.prober.probe_all([self.lab.probe_of(p.src, p.dst, p.port, p.protocol)
                                                for p in stage.probes])
        return [result(stage.step, p, o) for p, o in zip(stage.probes, outs, strict=True)]

    async def run(self) -> CaseResult:
        res = CaseResult(self.case.name)
        done = 0
        try:
            t0 = time.monotonic()
            await self.setup()
            for stage in self.stages:
                seen = await self.apply(stage.ops)
                await self.pipe.wait_converged(seen)
                res.results += await self.probe(stage)
                done += 1
            log(f"  {self.case.name}: {res.passed} passed, {res.failed} failed "
                f"({time.monotonic() - t0:.1f} s)")
        except (TimeoutError, Exception) as e:  # the lab failed: every remaining probe is an error
            why = f"lab failure: {type(e).__name__}: {e}"
            log(f"  {self.case.name}: {why}")
            for stage in self.stages[done:]:
                res.results += [ProbeResult(stage.step, p, "deny", why) for p in stage.probes]
        finally:
            await self.close()
        return res

    async def close(self) -> None:
        try:
            await self.pipe.close()
        finally:
            await self.lab.down()


def result(step: str | None, probe: cases.Probe, o: Outcome) -> ProbeResult:
    if o.observed is None:
        return ProbeResult(step, probe, "deny", o.error or "probe failed")
    return ProbeResult(step, probe, o.observed)


async def run_paths(paths: list[str], mode: str = "bridged", probe_timeout: float = 1.5,
                    keep_logs: bool = False) -> int:
    unusable = False
    planned: list[tuple[Case, list[Stage]]] = []
    for item in cases.load_each(paths):
        if isinstance(item, CaseError):
            log(f"stockade lab run: {item}")
            unusable = True
            continue
        try:
            planned.append((item, cases.case_stages(item)))
        except CaseError as e:
            log(f"stockade lab run: {e}")
            unusable = True
    results: list[CaseResult] = []
    t0 = time.monotonic()
    for i, (case, stages) in enumerate(planned):
        log(f"[{i + 1}/{len(planned)}] {case.name} ({case.nodes} nodes, {mode})")
        run = CaseRun(case, stages, mode, probe_timeout)  # type: ignore[arg-type]
        run.lab.keep_logs = keep_logs
        results.append(await run.run())
    doc = cases.result_document("lab", results)
    cases.write_result(doc, sys.stdout)
    log(f"lab run: {doc['passed']} passed, {doc['failed']} failed, {len(planned)} cases "
        f"in {time.monotonic() - t0:.1f} s")
    if unusable:
        return 2
    return 1 if doc["failed"] else 0
