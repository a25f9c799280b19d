"""The network between node-1 and the controller cut, then restored.

Injected inside node-1's namespace for the control address only (pod
traffic still flows; see ``inject.Partition``), both directions, two ways:
silently (DROP in ``raw``) and with REJECT in ``filter`` (next to the
agent's hooks, which must leave it alone).  Opt-in (``STOCKADE_FAULTS_LONG=1``):
a 45 s silent cut, past the gRPC keepalive (20-30 s + 10 s), so the stream
is declared dead and the agent reconnects through its backoff.  During the cut two changes are written: a new
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

import os
import time
from typing import Any

import pytest

from stockade.case_addresses import node_name

from .faultlab import FORBIDDEN, FaultLab, big_policy, policy, put
from .inject import Partition
from .report import report
from .verify import agent_digest, exact, kernel_matches, node_row, wait_status
from .watch import watching

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(150)]

CUT_SECONDS = 4.0  # how long the node stays cut off (checked, not slept, while it lasts)


LONG = pytest.mark.skipif(not os.environ.get("STOCKADE_FAULTS_LONG"),
                          reason="a 45 s cut (past the gRPC keepalive): set STOCKADE_FAULTS_LONG=1")


@pytest.mark.parametrize(("mode", "hold"), [
    pytest.param("drop", CUT_SECONDS, id="drop"),
    pytest.param("reject", CUT_SECONDS, id="reject"),
    pytest.param("drop", 45.0, id="drop-45s-past-keepalive", marks=[LONG, pytest.mark.timeout(240)]),
])
async def test_node_cut_from_controller_keeps_state_and_converges_after(faultlab: FaultLab, mode: str,
                                                                        hold: float) -> None:
    fl, pipe, lab = faultlab, faultlab.pipe, faultlab.run.lab
    n0, n1 = node_name(0), node_name(1)
    before = node_row(await pipe.status(), n1)["desired_digest"]
    cut = Partition(lab.plan.node_ns(1), mode)
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
            connected = True
            while time.monotonic() - t_cut < hold or checks < 2:
                # fail-static: node-1 enforces exactly its pre-cut state
                assert await agent_digest(pipe, 1) == before
                assert await kernel_matches(pipe, 1, before) == ""
                assert await fl.observe("x/web", "x/other") == "allow"  # the isolating policy is not there yet
                row = node_row(await pipe.status(), n1)
                assert row["applied_digest"] == before
                connected = bool(row.get("connected"))
                checks += 1
            cut_seconds = time.monotonic() - t_cut
            assert cut.rules_present() == 2  # nobody (the agent's writes included) removed them
        finally:
            cut.restore()
        t_restore = time.monotonic()
        await pipe.wait_converged(seen, timeout=60)
        t_conv = time.monotonic()
        digests = await exact(pipe)
        assert digests[n1] != before
        assert await fl.observe("x/web", "x/other") == "deny"
    assert w.forbidden_allowed == 0, w.failures()
    report(f"partition-{mode}-{hold:.0f}s", cut_seconds=round(cut_seconds, 2), fail_static_checks=checks,
           controller_saw_node1_connected_at_end_of_cut=connected,
           converge_seconds=round(t_conv - t_restore, 2), forbidden_probes=w.forbidden_tries,
           forbidden_allowed=w.forbidden_allowed, allowed_dropped=w.allowed_denied, probe_errors=w.errors)
