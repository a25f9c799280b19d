"""``stockade lab run``: policy cases against the real pipeline, real packets.

For each case (``stockade.cases`` loads it and lays out its stages and
address plan): build a lab (``cluster.Lab``) with the case's nodes and
outside hosts, start every pod's echo server *before* the pod exists at the
API, start the emulator, controller and agents (``pipeline.Pipeline``; their
channel TLS with agent tokens as in a real cluster, ``--insecure-grpc`` for
plaintext; a case may not use the agents' namespace ``stockade-system``),
then per stage: write the stage's objects to the emulator in order (a new
pod is wired first, a deleted pod is unwired after its deletion), wait for
the agents' acknowledgement of the result, and run the stage's probes
concurrently (``prober``).  Consecutive cases with the same nodes and
outside hosts share one lab and pipeline (a :class:`Session`): the previous
case's objects are deleted, and the deletion acknowledged, before the next
case starts; ``--isolate`` gives every case its own.  A case whose lab
breaks gets a fresh one for the cases after it.  Every lab is torn down at
the end, also on failure and on Ctrl-C/SIGTERM (the CLI turns those into
cancellation).

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
from stockade.lab.channel import AGENT_NAMESPACE
from stockade.lab.cluster import Lab
from stockade.lab.pipeline import Pipeline
from stockade.lab.prober import DEFAULT_TIMEOUT, Outcome
from stockade.lab.topology import External, Mode

# namespaces the API server does not let anyone delete (their pods and
# policies are deleted one by one; the next case re-labels them), and the
# lab's own agent namespace (its agent pods must outlive every case)
KEPT_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease", AGENT_NAMESPACE})


def uses_agent_namespace(stages: list[Stage]) -> bool:
    """Whether a case writes anything in the lab's agent namespace (it would
    disturb the agents' pods, which their tokens are bound to)."""
    return any(op.namespace == AGENT_NAMESPACE or (op.kind == "Namespace" and op.name == AGENT_NAMESPACE)
               for st in stages for op in st.ops)


def log(msg: str) -> None:
    try:
        print(msg, file=sys.stderr, flush=True)
    except OSError:  # a closed stderr must not stop a run or its teardown
        pass


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


class Session:
    """One lab and pipeline running cases one after another.

    Cases of a session share the node count and their outside hosts (same
    name, same address).  Between cases every policy, pod and namespace
    (but ``default`` and the other undeletable system namespaces, and the
    agents' ``stockade-system`` with their pods) of the previous case is deleted and the deletion
    acknowledged by the agents, so each case starts from an empty cluster,
    without paying for new processes.  ``policies`` holds (namespace, name)
    and ``namespaces`` the names written by the current case.
    """

    def __init__(self, group: list[tuple[Case, list[Stage]]], mode: Mode = "bridged",
                 probe_timeout: float = DEFAULT_TIMEOUT, insecure: bool = False) -> None:
        self.group = list(group)  # a copy: the caller pops the cases it has run
        ext: dict[str, str] = {}
        for c, _ in group:
            for x in c.external:
                ext.setdefault(x.name, x.ip)
        self.lab = Lab(group[0][0].nodes, mode, tuple(External(n, ip) for n, ip in ext.items()),
                       probe_timeout=probe_timeout)
        self.pipe = Pipeline(self.lab, insecure=insecure)
        self.started = False
        self.policies: set[tuple[str, str]] = set()
        self.namespaces: set[str] = set()

    async def _wire(self, stages: list[Stage]) -> None:
        first = [op.obj for op in stages[0].ops if op.kind == "Pod" and op.obj is not None]
        await asyncio.gather(*(self.lab.add_pod(*pod_wiring(obj)) for obj in first))

    async def start(self, stages: list[Stage]) -> None:
        """Build the lab, serve every outside port of the group, wire the
        first case's pods, start the pipeline."""
        await self.lab.up()
        ports: dict[str, set[tuple[int, str]]] = {}
        for c, st in self.group:
            for name, ps in external_ports(c, st).items():
                ports.setdefault(name, set()).update(ps)
        await asyncio.gather(*(self.lab.serve_external(n, sorted(p)) for n, p in ports.items()))
        await self._wire(stages)
        await self.pipe.start()
        self.started = True

    async def apply(self, ops: Iterable[ObjectOp]) -> dict[str, int]:
        ops = list(ops)
        seen = await apply_ops(self.lab, self.pipe, ops)
        for op in ops:
            if op.kind == "NetworkPolicy":
                (self.policies.discard if op.is_delete else self.policies.add)((op.namespace, op.name))
            elif op.kind == "Namespace":
                (self.namespaces.discard if op.is_delete else self.namespaces.add)(op.name)
        return seen

    async def clear(self) -> None:
        """Delete the previous case's objects and wait for the agents."""
        ops = [ObjectOp("NetworkPolicy", ns, name, None) for ns, name in sorted(self.policies)]
        ops += [ObjectOp("Pod", k.split("/", 1)[0], k.split("/", 1)[1], None) for k in sorted(self.lab.pods)]
        ops += [ObjectOp("Namespace", "", ns, None) for ns in sorted(self.namespaces) if ns not in KEPT_NAMESPACES]
        seen = await self.pipe.write(ops)  # all deletions first, then the pods unwired side by side
        self.policies.clear()
        self.namespaces.clear()
        await asyncio.gather(*(self.lab.remove_pod(k) for k in list(self.lab.pods)))
        await self.pipe.wait_converged(seen)

    async def probe(self, stage: Stage) -> list[ProbeResult]:
        outs = await self.lab.prober.probe_all([self.lab.probe_of(p.src, p.dst, p.port, p.protocol)
                                                for p in stage.probes])
        return [result(stage.step, p, o) for p, o in zip(stage.probes, outs, strict=True)]

    async def run_case(self, case: Case, stages: list[Stage]) -> CaseResult:
        """Run one case; a lab failure makes every remaining probe an error
        and is raised again (as :class:`LabFailure`) after the results."""
        res = CaseResult(case.name)
        done = 0
        t0 = time.monotonic()
        try:
            if not self.started:
                await self.start(stages)
            else:
                await self.clear()
                await self._wire(stages)
            for stage in stages:
                seen = await self.apply(stage.ops)
                await self.pipe.wait_converged(seen)
                res.results += await self.probe(stage)
                done += 1
        except Exception as e:  # the lab failed: every remaining probe is an error
            why = f"lab failure: {type(e).__name__}: {e}"
            log(f"  {case.name}: {why}")
            for stage in stages[done:]:
                res.results += [ProbeResult(stage.step, p, "deny", why) for p in stage.probes]
            raise LabFailure(res) from e
        log(f"  {case.name}: {res.passed} passed, {res.failed} failed ({time.monotonic() - t0:.1f} s)")
        return res

    async def close(self) -> None:
        try:
            await self.pipe.close()
        finally:
            await self.lab.down()


class LabFailure(Exception):
    """A case's lab broke; ``result`` holds its results (remaining probes as errors)."""

    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.name)
        self.result = result


class CaseRun(Session):
    """One case in a lab of its own; :meth:`run` returns its results."""

    def __init__(self, case: Case, stages: list[Stage], mode: Mode = "bridged",
                 probe_timeout: float = DEFAULT_TIMEOUT, insecure: bool = False) -> None:
        super().__init__([(case, stages)], mode, probe_timeout, insecure)
        self.case, self.stages = case, stages

    async def setup(self) -> None:
        await self.start(self.stages)

    async def run(self) -> CaseResult:
        try:
            return await self.run_case(self.case, self.stages)
        except LabFailure as e:
            return e.result
        finally:
            await self.close()


def groups(planned: list[tuple[Case, list[Stage]]], isolate: bool) -> list[list[tuple[Case, list[Stage]]]]:
    """Consecutive cases that can share a lab: same node count, outside
    hosts that agree on names and addresses."""
    out: list[list[tuple[Case, list[Stage]]]] = []
    names: dict[str, str] = {}
    for item in planned:
        case = item[0]
        fits = bool(out) and not isolate and out[-1][0][0].nodes == case.nodes
        mine = {x.name: x.ip for x in case.external}
        if fits:
            ips = {ip: n for n, ip in names.items()}
            fits = all(names.get(n, ip) == ip and ips.get(ip, n) == n for n, ip in mine.items())
        if fits:
            out[-1].append(item)
            names.update(mine)
        else:
            out.append([item])
            names = dict(mine)
    return out


def result(step: str | None, probe: cases.Probe, o: Outcome) -> ProbeResult:
    if o.observed is None:
        return ProbeResult(step, probe, "deny", o.error or "probe failed")
    return ProbeResult(step, probe, o.observed)


async def run_paths(paths: list[str], mode: str = "bridged", probe_timeout: float = DEFAULT_TIMEOUT,
                    keep_logs: bool = False, isolate: bool = False, insecure: bool = False) -> int:
    unusable = False
    planned: list[tuple[Case, list[Stage]]] = []
    for item in cases.load_each(paths):
        if isinstance(item, CaseError):
            log(f"stockade lab run: unusable case file {item}")
            unusable = True
            continue
        try:
            stages = cases.case_stages(item)
        except CaseError as e:
            log(f"stockade lab run: unusable case file {e}")
            unusable = True
            continue
        if not insecure and uses_agent_namespace(stages):
            log(f"stockade lab run: unusable case {item.name}: namespace {AGENT_NAMESPACE} is the lab's agent "
                f"namespace (use another, or --insecure-grpc)")
            unusable = True
            continue
        planned.append((item, stages))
    results: list[CaseResult] = []
    t0 = time.monotonic()
    n = 0
    for group in groups(planned, isolate):
        pending = list(group)
        while pending:
            session = Session(pending, mode, probe_timeout, insecure)  # type: ignore[arg-type]
            session.lab.keep_logs = keep_logs
            try:
                while pending:
                    case, stages = pending.pop(0)
                    n += 1
                    log(f"[{n}/{len(planned)}] {case.name} ({case.nodes} nodes, {mode})")
                    results.append(await session.run_case(case, stages))
            except LabFailure as e:
                results.append(e.result)  # the next cases get a fresh lab
            finally:
                await session.close()
    doc = cases.result_document("lab", results)
    try:
        cases.write_result(doc, sys.stdout)
    except BrokenPipeError:  # `stockade lab run ... | head`: the reader left; keep the exit status
        pass
    log(f"lab run: {doc['passed']} passed, {doc['failed']} failed, {len(planned)} cases "
        f"in {time.monotonic() - t0:.1f} s")
    if unusable:
        return 2
    return 1 if doc["failed"] else 0
