"""``stockade evaluate CASE_OR_DIR...``: decide policy cases without a kernel.

What: loads case files (``stockade.cases``), builds each case's cluster
through the same parser as the controller (``controller.parse``), and
decides every probe twice: (a) with the spec-level oracle
(``controller.oracle``) and (b) by running a packet through the compiled
node states (``controller.engine`` + ``controller.walker``).  It prints the
result document of ``shared/cases/FORMAT.md`` with (b)'s verdicts; when (a)
and (b) disagree it says so on stderr (case, step, probe, both verdicts and
the oracle's reasons) and exits 1 even if (b) met the expectation.  When the
compiler or walker is not importable it reports (a), with a warning.

Exit status: 0 every probe as expected, 1 some probe not (or a
disagreement), 2 some case file unusable (named with its field on stderr;
nothing is run for that file, the others still run).  Invalid policies are
reported on stderr with their field paths and are left out, as the API
server would reject them; the other policies are unaffected.
``--explain`` prints the oracle's reasons for every probe on stderr;
``--oracle-only`` skips (b).

What not: no network, no kernel, no Kubernetes API.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

from controller import oracle, parse
from controller.model import Protocol
from stockade import cases


class Compiled:
    """Decision (b): the compiler's engine plus the packet walker.

    Holds a ``controller.engine.Engine`` fed the same records as the oracle
    and walks each probe's first packet (``controller.walker.walk``) through
    the node states of its two ends."""

    def __init__(self) -> None:
        from controller.engine import Engine

        self.engine = Engine()

    def set(self, kind: str, record: Any) -> None:
        e = self.engine
        if kind == "Namespace":
            e.set_namespace(record)
        elif kind == "Pod":
            e.set_pod(record)
        elif kind == "Node":
            e.set_node(record)
        else:
            e.set_policy(record)

    def remove(self, kind: str, key: str) -> None:
        e = self.engine
        {"Namespace": e.remove_namespace, "Pod": e.remove_pod, "Node": e.remove_node,
         "NetworkPolicy": e.remove_policy}[kind](key)

    def set_invalid_policy(self, key: str, errors: list[str]) -> None:
        self.engine.set_invalid_policy(key, errors)

    def decide(self, src: oracle.Endpoint, dst: oracle.Endpoint, port: int, protocol: Protocol) -> bool:
        """Walk the connection's first packet through the states of the
        source's and the destination's nodes (None: outside the cluster)."""
        from controller.walker import Packet, walk

        packet = Packet(src.ip, dst.ip, protocol.lower(), port,
                        src_kind="pod" if src.pod is not None else "host",
                        dst_kind="pod" if dst.pod is not None else "host")
        src_state = self.engine.node_state(src.node) if src.node else None
        dst_state = self.engine.node_state(dst.node) if dst.node else None
        return walk(src_state, dst_state, packet).allowed


def compiled_or_none(err: TextIO) -> Compiled | None:
    try:
        return Compiled()
    except ImportError as e:
        print(f"stockade evaluate: warning: compiled path unavailable ({e}); reporting the oracle's "
              "verdicts only", file=err)
        return None


@dataclass
class Runner:
    """Runs one case: ``cluster`` for the oracle, ``compiled`` for (b).
    ``valid`` holds the keys of policies currently applied."""

    case: cases.Case
    err: TextIO
    compiled: Compiled | None
    cluster: oracle.Cluster = field(default_factory=oracle.Cluster)
    valid: set[str] = field(default_factory=set)
    disagreements: int = 0
    explain: bool = False

    def apply(self, op: cases.ObjectOp) -> None:
        key = f"{op.namespace}/{op.name}" if op.namespace else op.name
        if op.obj is None:
            self._remove(op.kind, key)
            return
        try:
            record: Any
            if op.kind == "Namespace":
                record = parse.parse_namespace(op.obj)
                self.cluster.set_namespace(record)
            elif op.kind == "Pod":
                record = parse.parse_pod(op.obj)
                self.cluster.set_pod(record)
            elif op.kind == "Node":
                record = parse.parse_node(op.obj)
                self.cluster.set_node(record)
            else:
                record = parse.parse_policy(op.obj)
                self.cluster.set_policy(record)
                self.valid.add(key)
        except parse.PolicyInvalid as e:
            print(f"stockade evaluate: {self.case.name}: NetworkPolicy {e.key} is invalid and not applied:",
                  file=self.err)
            for line in e.errors:
                print(f"  {line}", file=self.err)
            if self.compiled is not None and e.key not in self.valid:
                self.compiled.set_invalid_policy(e.key, list(e.errors))
            return
        if self.compiled is not None:
            self.compiled.set(op.kind, record)

    def _remove(self, kind: str, key: str) -> None:
        if kind == "Namespace":
            self.cluster.remove_namespace(key)
        elif kind == "Pod":
            self.cluster.remove_pod(key)
        elif kind == "Node":
            self.cluster.remove_node(key)
        else:
            self.cluster.remove_policy(key)
            self.valid.discard(key)
        if self.compiled is not None:
            self.compiled.remove(kind, key)

    def ref(self, name: str) -> str:
        """A probe end as the oracle takes it: pod key, or the host's IP."""
        if name.startswith("external:"):
            return next(e.ip for e in self.case.external if e.name == name[len("external:"):])
        return name

    def probe(self, step: str | None, p: cases.Probe) -> cases.ProbeResult:
        proto: Protocol = "UDP" if p.protocol == "UDP" else "SCTP" if p.protocol == "SCTP" else "TCP"
        try:
            d = oracle.decide(self.cluster, self.ref(p.src), self.ref(p.dst), p.port, proto)
        except oracle.OracleError as e:
            return cases.ProbeResult(step, p, "deny", f"cannot decide: {e}")
        observed = d.verdict
        if self.explain:
            where = f"step {step!r}" if step is not None else "top-level"
            print(f"stockade evaluate: {self.case.name} ({where}, {p.field}): {d.summary()}", file=self.err)
        if self.compiled is not None:
            try:
                walked = "allow" if self.compiled.decide(d.src, d.dst, p.port, proto) else "deny"
            except Exception as e:  # a broken compiled state must be loud, never a verdict
                self.disagreements += 1
                print(f"stockade evaluate: case {self.case.name} ({p.field}): the compiled path failed: "
                      f"{type(e).__name__}: {e}", file=self.err)
                return cases.ProbeResult(step, p, observed, f"compiled path failed: {e}")
            if walked != observed:
                self.disagreements += 1
                where = f"step {step!r}" if step is not None else "top-level"
                print(f"stockade evaluate: DISAGREEMENT in case {self.case.name} ({where}, {p.field}): "
                      f"{p.src} -> {p.dst} {p.port}/{p.protocol}: walker says {walked}, oracle says "
                      f"{observed}", file=self.err)
                for r in d.reasons():
                    print(f"  oracle {r}", file=self.err)
            observed = walked
        return cases.ProbeResult(step, p, observed)


def run_case(case: cases.Case, stages: list[cases.Stage], err: TextIO,
             compiled: Compiled | None, explain: bool = False) -> tuple[cases.CaseResult, int]:
    """Run a loaded case; (its result, number of oracle/walker disagreements)."""
    runner = Runner(case, err, compiled, explain=explain)
    result = cases.CaseResult(case.name)
    for stage in stages:
        for op in stage.ops:
            runner.apply(op)
        for p in stage.probes:
            result.results.append(runner.probe(stage.step, p))
    return result, runner.disagreements


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="stockade evaluate",
        description="Decide every probe of policy cases from the policy model alone (no kernel).")
    ap.add_argument("paths", nargs="+", metavar="CASE_OR_DIR", help="case files or folders of *.json cases")
    ap.add_argument("--explain", action="store_true",
                    help="print the oracle's reasons for every probe on stderr (policies, rule index, direction)")
    ap.add_argument("--oracle-only", action="store_true",
                    help="decide with the spec-level oracle only (skip the compiled rules)")
    args = ap.parse_args(argv)
    out, err = sys.stdout, sys.stderr
    unusable = 0
    disagreements = 0
    results: list[cases.CaseResult] = []
    warned = False
    for item in cases.load_each(args.paths):
        if isinstance(item, cases.CaseError):
            unusable += 1
            print(f"stockade evaluate: unusable case file {item}", file=err)
            continue
        try:
            stages = cases.case_stages(item)
        except cases.CaseError as e:
            unusable += 1
            print(f"stockade evaluate: unusable case file {e}", file=err)
            continue
        compiled = None
        if not args.oracle_only:
            compiled = compiled_or_none(err if not warned else io.StringIO())
            warned = True
        res, dis = run_case(item, stages, err, compiled, args.explain)
        disagreements += dis
        results.append(res)
        for r in res.results:
            if r.error:
                print(f"stockade evaluate: {item.name}: {r.probe.field}: {r.error}", file=err)
    doc = cases.result_document("evaluate", results)
    try:
        cases.write_result(doc, out)
        out.flush()
    except BrokenPipeError:  # `stockade evaluate ... | head`: the reader left; keep the exit status
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # as the Python docs advise
    if disagreements:
        print(f"stockade evaluate: {disagreements} probe(s) where the compiled rules and the oracle disagree",
              file=err)
    if unusable:
        return 2
    return 1 if doc["failed"] or disagreements else 0

