"""The result document both case runners write (``shared/cases/FORMAT.md``).

What: :class:`ProbeResult` (one probe's observed verdict, or its error),
:class:`CaseResult` (a case's results and counts), :func:`result_document`
and :func:`write_result` (the JSON both ``stockade evaluate`` and
``stockade lab run`` print).

Why its own module: the two runners must report in one schema.

What not: no running and no judging beyond ``observed == expect``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from stockade.case_values import Probe


@dataclass(frozen=True, slots=True)
class ProbeResult:
    step: str | None
    probe: Probe
    observed: str  # "allow" or "deny"
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and self.observed == self.probe.expect

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"step": self.step, "from": self.probe.src, "to": self.probe.dst,
                             "port": self.probe.port, "protocol": self.probe.protocol,
                             "expect": self.probe.expect, "observed": self.observed}
        if self.error:
            d["error"] = self.error
        return d


@dataclass(slots=True)
class CaseResult:
    name: str
    results: list[ProbeResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "failed": self.failed,
                "results": [r.to_json() for r in self.results]}


def result_document(mode: str, cases: Iterable[CaseResult]) -> dict[str, Any]:
    cs = [c.to_json() for c in cases]
    return {"mode": mode, "cases": cs, "passed": sum(c["passed"] for c in cs),
            "failed": sum(c["failed"] for c in cs)}


def write_result(doc: dict[str, Any], stream: TextIO) -> None:
    json.dump(doc, stream, indent=1)
    stream.write("\n")
