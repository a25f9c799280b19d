"""Reachability matrices: which probes make one, and how it is printed.

A matrix has one row per source (pods and outside hosts) and one column per
target that serves something (pods, outside hosts), probed on the target's
first port.  Cells: ``✓`` allowed, ``·`` denied, ``!`` error, ``-`` the
diagonal.  Pure: no I/O; the demo probes and prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ALLOW, DENY, ERROR, SELF = "✓", "·", "!", "-"
CORNER = "from \\ to"


@dataclass(frozen=True, slots=True)
class Cell:
    src: str
    dst: str
    port: int
    protocol: str


def cells(sources: Sequence[str], targets: Mapping[str, tuple[int, str]]) -> list[Cell]:
    """One cell per (source, target) pair except a pod to itself."""
    return [Cell(s, t, port, proto) for s in sources for t, (port, proto) in targets.items() if s != t]


def short(name: str) -> str:
    if name.startswith("external:"):
        return "ext:" + name.split(":", 1)[1]
    return name


def render(sources: Sequence[str], targets: Mapping[str, tuple[int, str]],
           observed: Mapping[tuple[str, str], str | None], title: str = "") -> str:
    """``observed[(src, dst)]`` is "allow", "deny" or None (error)."""
    cols = list(targets)
    heads = [f"{short(t)}:{targets[t][0]}" + ("" if targets[t][1] == "TCP" else "/" + targets[t][1].lower())
             for t in cols]
    w0 = max([len(short(s)) for s in sources] + [len(CORNER)])
    widths = [max(len(h), 1) for h in heads]
    lines = [title] if title else []
    lines.append(f"  {CORNER:<{w0}}  " + "  ".join(f"{h:^{w}}" for h, w in zip(heads, widths, strict=True)))
    for s in sources:
        row = []
        for t, w in zip(cols, widths, strict=True):
            if s == t:
                mark = SELF
            else:
                o = observed.get((s, t), "missing")
                mark = ALLOW if o == "allow" else DENY if o == "deny" else ERROR
            row.append(f"{mark:^{w}}")
        lines.append(f"  {short(s):<{w0}}  " + "  ".join(row))
    return "\n".join(lines)
