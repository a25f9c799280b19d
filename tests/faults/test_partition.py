"""The network between node-1 and the controller cut, then restored.

Injected with DROP rules in node-1's namespace (``raw`` table, both
directions, the control address only: pod traffic still flows; see
``inject.Partition``).  During the cut two changes are written: a new
policy isolating x/other (on node-1: web -> other goes from allowed to
denied) and a big policy on x/web (node-0).  Asserted, with the prober
running throughout:

* node-0 converges during the cut; node-1 cannot (the controller's desired
  state for it moves on, its acknowledgement does not);
* node-1 keeps its last state (fail-static): agent and kernel still hold
  the pre-cut digest, web -> other is still answered;
* after the restore node-1 converges to exactly the desired state, and
  web -> other is now denied;
* no forbidden connection got through at any moment.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from stockade.lab.topology import node_name

from .faultlab import FORBIDDEN, FaultLab, big_policy, policy, put
from .inject import Partition
from .report import report
from .verify import agent_digest, exact, kernel_matches, node_row, wait_status
from .watch import watching

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(150)]

CUT_SECONDS = 4.0  # how long the node stays cut off (checked, not slept, while it lasts)


async def test_node_cut_from_controller_keeps_state_and_converges_after(faultlab: FaultLab) -> None:
    fl, pipe, lab = faultlab, faultlab.pipe, faultlab.run.lab
    n0, n1 = node_name(0), node_name(1)
    before = node_row(await pipe.status(), n1)["desired_digest"]
    cut = Partition(lab.plan.node_ns(1))
    async with watching(lab, FORBIDDEN, [("x/client", "x/web", 80)]) as w:
        try:
            cut.cut()
            t_cut = time.monotonic()
            seen = await pipe.write([put(policy("other", {"app": "other"}, [])), put(big_policy("big", 500))])

            def cut_off(st: dict[str, Any]) -> str:
                r0, r1 = node_row(st, n0), node_row(st, n1)
                if not (r0.get("in_sync") and r0.get("applied_version") == r0.get("desired_version")):
                    return "node-0 not in sync yet"
                if r1.get("desired_digest") == before:
                    return "node-1's desired state not changed yet"
                return ""

            st = await wait_status(pipe, cut_off)
            # node-1 cannot have it: the controller's acked digest for it is still the old one
            assert node_row(st, n1)["applied_digest"] == before
            checks = 0
            while time.monotonic() - t_cut < CUT_SECONDS or checks < 2:
                # fail-static: node-1 enforces exactly its pre-cut state
                assert await agent_digest(pipe, 1) == before
                assert await kernel_matches(pipe, 1, before) == ""
                assert await fl.observe("x/web", "x/other") == "allow"  # the isolating policy is not there yet
                assert node_row(await pipe.status(), n1)["applied_digest"] == before
                checks += 1
            cut_seconds = time.monotonic() - t_cut
        finally:
            cut.restore()
        t_restore = time.monotonic()
        await pipe.wait_converged(seen, timeout=60)
        t_conv = time.monotonic()
        digests = await exact(pipe)
        assert digests[n1] != before
        assert await fl.observe("x/web", "x/other") == "deny"
    assert w.forbidden_allowed == 0, w.failures()
    report("partition-node-controller", cut_seconds=round(cut_seconds, 2), fail_static_checks=checks,
           converge_seconds=round(t_conv - t_restore, 2), forbidden_probes=w.forbidden_tries,
           forbidden_allowed=w.forbidden_allowed, allowed_dropped=w.allowed_denied, probe_errors=w.errors)
