"""The fault tests' instruments can fail: the prober sees an open window,
and the kernel witness sees a kernel that differs from the desired state.

Without this, "0 forbidden connections" and "exact on every node" could
be the readings of instruments that never read anything else.
"""

from __future__ import annotations

import subprocess

import pytest

from stockade.state import SET_PREFIX

from .faultlab import ALLOWED, FORBIDDEN, FaultLab, delete
from .verify import exact, kernel_matches, node_row
from .watch import watching

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(120)]


async def test_prober_sees_an_opened_pair_and_kernel_witness_sees_drift(faultlab: FaultLab) -> None:
    fl, pipe, lab = faultlab, faultlab.pipe, faultlab.run.lab
    async with watching(lab, FORBIDDEN, ALLOWED) as w:
        await pipe.wait_converged(await pipe.write([delete("web")]))  # other -> web, near -> web now allowed
        while w.records[FORBIDDEN[0]].allowed == 0 or w.records[FORBIDDEN[1]].allowed == 0:
            assert await fl.observe(*FORBIDDEN[0][:2]) == "allow"
    assert w.forbidden_allowed > 0 and len(w.failures()) == 2, w.summary()
    digests = await exact(pipe)

    # drift behind the agent's back: one address added to one of its sets on node-0
    node0 = lab.plan.node_ns(0)
    names = subprocess.run(["ip", "netns", "exec", node0, "ipset", "list", "-n"], capture_output=True, text=True,
                           timeout=10).stdout.split()
    ours = [n for n in names if n.startswith(SET_PREFIX)]
    added = next((n for n in ours if subprocess.run(["ip", "netns", "exec", node0, "ipset", "add", n, "10.255.255.254"],
                                                    capture_output=True, timeout=10).returncode == 0), None)
    assert added, f"no set of ours on node-0 took an address: {ours}"
    why = await kernel_matches(pipe, 0, digests["node-0"])
    assert "kernel differs" in why, why
    assert node_row(await pipe.status(), "node-0")["in_sync"]  # the controller cannot know: only the kernel read-back does
