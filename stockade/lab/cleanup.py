"""``stockade lab clean``: remove what killed lab runs left behind.

A run's leftovers are found two ways: its run-state file under
``/run/stockade-lab/`` (namespaces and processes, each process checked by PID
*and* start time so a recycled PID is never signalled) and the namespace name
prefix ``stklab-<runid>-``.  Runs whose owner process is still alive are left
alone unless ``force`` is given, so a clean never breaks a concurrent run.

It removes only lab namespaces, processes started by lab runs (or running
inside lab namespaces), and the run files; nothing else on the machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stockade.lab import netns, runstate
from stockade.lab.topology import NS_PREFIX, runid_of


@dataclass
class CleanReport:
    namespaces: list[str] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)
    skipped_runs: list[str] = field(default_factory=list)


def clean(force: bool = False, runid: str | None = None) -> CleanReport:
    report = CleanReport()
    live: set[str] = set()
    states = runstate.load_all()
    for st in states:
        if runid is not None and st.runid != runid:
            continue
        if st.owner_alive() and not force:
            live.add(st.runid)
            report.skipped_runs.append(st.runid)
            continue
        pids = [p for p, (start, _) in st.processes.items() if runstate.alive(p, start)]
        netns.kill_pids(pids)
        report.processes += pids
        report.namespaces += netns.delete_namespaces(st.namespaces)
        st.remove()
    leftovers = []
    for name in netns.list_namespaces(NS_PREFIX):
        rid = runid_of(name)
        if rid is None or rid in live or (runid is not None and rid != runid):
            continue
        # a run without a state file (or one already cleaned above): only
        # when no live run owns it
        if any(s.runid == rid and s.owner_alive() for s in states) and not force:
            continue
        leftovers.append(name)
    report.namespaces += netns.delete_namespaces(leftovers)
    return report
