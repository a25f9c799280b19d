"""The API server misbehaving during a burst of changes.

In four phases, 100 changes each (``churn.changes``), the emulator's
faults are armed (``POST /_emulator/faults/...``) and the controller's
watches are cut so that it must come back through them:

1. watches dropped mid-stream; the next pod lists/watches answer 500
   (``Status`` InternalError) and the next policy lists/watches a non-JSON
   HTML 502 (a proxy's answer);
2. watches ended; the next lists/watches answer 410 Expired (relist);
3. watches dropped while the API stalls for 2 s (accepts, answers nothing);
4. every response delayed 100 ms and the next 20 requests of anyone
   (our writes included: they are retried) answer 500.

Then the faults are cleared.  Asserted: the controller saw the faults
(its watch error/relist counters moved, the armed counts were consumed),
no forbidden connection got through at any moment, and the final state is
exactly right: controller, agents and kernels agree, a fresh controller
computes the same digests, and packets on every pod pair match the oracle.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from .churn import changes
from .faultlab import ALLOWED, FORBIDDEN, FaultLab
from .inject import arm, armed, write_retrying
from .report import report
from .verify import desired_digests, exact, packets_match_oracle, wait_status
from .watch import watching

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(180)]

PODS = "/api/v1/pods"
POLICIES = "/apis/networking.k8s.io/v1/networkpolicies"


def watch_counters(st: dict[str, Any]) -> dict[str, int]:
    out = {"errors": 0, "relists": 0, "restarts": 0}
    for w in st.get("watches", []):
        for k in out:
            out[k] += int(w.get(k, 0))
    return out


async def test_api_errors_stalls_and_410_during_a_burst(faultlab: FaultLab) -> None:
    fl, pipe = faultlab, faultlab.pipe
    before = watch_counters(await pipe.status())
    seen: dict[str, int] = {}
    retries = 0
    # (name, faults to arm, counter of the controller's watches that must move: the faults reached it)
    phases: list[tuple[str, list[tuple[str, dict[str, Any]]], str]] = [
        ("500 and HTML 502 on re-watch", [("error", {"count": 3, "code": 500, "pathPrefix": PODS}),
                                          ("bad-gateway", {"count": 3, "pathPrefix": POLICIES}),
                                          ("cut-watches", {"clean": False})], "errors"),
        ("410 Expired", [("expire", {"count": 4}), ("cut-watches", {"clean": True})], "relists"),
        ("stall 2 s", [("stall", {"seconds": 2}), ("cut-watches", {"clean": False})], ""),
        ("delay 100 ms, 20 x 500 for everyone", [("delay", {"ms": 100}), ("error", {"count": 20, "code": 500})], ""),
    ]
    async with watching(fl.run.lab, FORBIDDEN, ALLOWED[:1]) as w:
        t0 = time.monotonic()
        for k, (_, arms, counter) in enumerate(phases):
            ops = changes(fl, 100, seed=10 + k)
            if counter == "relists":  # a policy delete's version lookup is a list: it would eat the 410s
                ops = [op for op in ops if not op.is_delete]
            was = watch_counters(await pipe.status())
            for fault, body in arms:
                await arm(pipe, fault, **body)
            writes = asyncio.create_task(write_retrying(pipe, ops, concurrency=8), name=f"burst-{k}")
            try:
                if counter:
                    await wait_status(pipe, lambda st, c=counter, b=was[counter]: (  # type: ignore[misc]
                        "" if watch_counters(st)[c] > b else f"controller's watch {c} still {b}"), timeout=30)
                got, n = await writes
            finally:
                if not writes.done():
                    writes.cancel()
                    await asyncio.gather(writes, return_exceptions=True)
            retries += n
            for kind, rv in got.items():
                seen[kind] = max(seen.get(kind, 0), rv)
        left = await armed(pipe)  # what the faults had not consumed yet
        await arm(pipe, "clear")
        t_clear = time.monotonic()
        st = await pipe.wait_converged(seen, timeout=90)
        t_conv = time.monotonic()
        digests = await exact(pipe)
    after = watch_counters(st)
    assert w.forbidden_allowed == 0, w.failures()
    assert after["errors"] > before["errors"], (before, after)  # the 500s / 502s reached the controller
    assert after["relists"] > before["relists"], (before, after)  # the 410s forced relists
    assert retries > 0  # our own writes met the faults too
    assert (left["errorCount"], left["badGatewayCount"], left["expireCount"]) == (0, 0, 0), left
    pairs, bad = await packets_match_oracle(pipe, sorted(fl.pods))
    assert bad == [], bad
    await pipe.restart_controller()
    st_new = await pipe.wait_converged(timeout=60)
    assert desired_digests(st_new) == digests
    assert await exact(pipe) == digests
    report("api-faults", changes=400, write_seconds=round(t_clear - t0, 2),
           converge_after_clear_seconds=round(t_conv - t_clear, 2), write_retries=retries,
           faults_left_unconsumed=left, controller_watch_counters={"before": before, "after": after},
           oracle_pairs=pairs, forbidden_probes=w.forbidden_tries, forbidden_allowed=w.forbidden_allowed,
           probe_errors=w.errors)
