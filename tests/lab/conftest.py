"""Lab test helpers: a lab fixture that is always torn down, and a check
that nothing of a run is left behind."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from stockade.lab import netns
from stockade.lab.cluster import Lab
from stockade.lab.topology import External


def leftovers(runid: str) -> list[str]:
    """Namespaces and run files of ``runid`` that still exist."""
    out = netns.list_namespaces(f"stklab-{runid}-")
    for p in (f"/run/stockade-lab/{runid}.json", f"/run/stockade-lab/{runid}"):
        if os.path.exists(p):
            out.append(p)
    return out


@pytest.fixture(params=["bridged", "routed"])
async def lab2(request: pytest.FixtureRequest) -> AsyncIterator[Lab]:
    """A 2-node lab with an outside host, in both modes; pods a, b on node 0,
    c on node 1, h hostNetwork on node 1."""
    lab = Lab(2, request.param, (External("internet", "192.0.2.10"),), probe_timeout=0.5)
    try:
        await lab.up()
        ports = [(80, "TCP"), (53, "UDP")]
        await lab.add_pod("d/a", 0, "198.18.0.2", False, ports)
        await lab.add_pod("d/b", 0, "198.18.0.3", False, ports)
        await lab.add_pod("d/c", 1, "198.18.1.2", False, ports)
        await lab.add_pod("d/h", 1, "", True, [(8080, "TCP")])
        await lab.serve_external("internet", ports)
        yield lab
    finally:
        await lab.down()
        assert leftovers(lab.runid) == []


def root_namespace_traces() -> list[str]:
    """Lab addresses, routes or links visible in the machine's own network
    namespace (there must be none: the lab lives in its namespaces only)."""
    import subprocess

    out = []
    for args in (["ip", "-o", "addr"], ["ip", "-o", "route", "show", "table", "all"], ["ip", "-o", "link"]):
        text = subprocess.run(args, capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            if any(x in line for x in (" 198.18.", " 198.19.", "192.0.2.10", " cbr0", "@stklab")):
                out.append(line)
    return out
