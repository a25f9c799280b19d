"""What a lab run has created, on disk, so a killed run can be cleaned up.

Each run keeps ``/run/stockade-lab/<runid>.json``: the owner's PID, the
namespaces it created and every process it started (PID plus the kernel's
start time, so a recycled PID is never mistaken for ours).  ``stockade lab
clean`` reads these files; the namespace name prefix finds whatever the file
missed.  Per-run scratch files (kubeconfigs, logs, agent state) live in
``/run/stockade-lab/<runid>/``.

This module only records and reads; killing and deleting is
``stockade.lab.netns``'s job.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field

STATE_DIR = "/run/stockade-lab"


def proc_starttime(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int, starttime: int | None) -> bool:
    st = proc_starttime(pid)
    return st is not None and (starttime is None or st == starttime)


@dataclass
class RunState:
    runid: str
    owner: int = field(default_factory=os.getpid)
    owner_start: int | None = None
    namespaces: list[str] = field(default_factory=list)
    processes: dict[int, tuple[int | None, str]] = field(default_factory=dict)  # pid -> (starttime, what)

    def __post_init__(self) -> None:
        if self.owner_start is None:
            self.owner_start = proc_starttime(self.owner)

    @property
    def path(self) -> str:
        return os.path.join(STATE_DIR, f"{self.runid}.json")

    @property
    def workdir(self) -> str:
        return os.path.join(STATE_DIR, self.runid)

    def save(self) -> None:
        os.makedirs(STATE_DIR, exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"runid": self.runid, "owner": self.owner, "owner_start": self.owner_start,
                       "namespaces": self.namespaces,
                       "processes": [[p, st, w] for p, (st, w) in self.processes.items()]}, f)
        os.replace(tmp, self.path)

    def add_namespaces(self, names: list[str]) -> None:
        self.namespaces += [n for n in names if n not in self.namespaces]
        self.save()

    def add_process(self, pid: int, what: str) -> None:
        self.processes[pid] = (proc_starttime(pid), what)
        self.save()

    def drop_process(self, pid: int) -> None:
        if self.processes.pop(pid, None) is not None:
            self.save()

    def owner_alive(self) -> bool:
        return alive(self.owner, self.owner_start)

    def remove(self) -> None:
        for p in (self.path,):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)


def load_all() -> list[RunState]:
    out: list[RunState] = []
    try:
        names = sorted(os.listdir(STATE_DIR))
    except FileNotFoundError:
        return out
    for n in names:
        if not n.endswith(".json"):
            continue
        try:
            with open(os.path.join(STATE_DIR, n)) as f:
                d = json.load(f)
            out.append(RunState(d["runid"], int(d["owner"]), d.get("owner_start"), list(d["namespaces"]),
                                {int(p): (st, w) for p, st, w in d["processes"]}))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out
