"""A burst of 1,000 policy and label changes in a few seconds.

The changes (``churn.changes``: pod relabels, churn policies created,
replaced, deleted) are written with 16 concurrent writers while the prober
watches the forbidden pairs.  Asserted:

* no forbidden connection got through at any moment;
* the final state is exactly right on every node: controller, agents and
  kernels agree (``verify.exact``); the digests equal those a *fresh*
  controller computes from the final cluster (the controller is restarted
  and its desired digests compared); and real packets on every ordered pod
  pair match the controller's spec-level oracle;
* the controller's RSS returns near its level before the burst: within
  ``RSS_TOLERANCE_KIB`` (CPython keeps freed arenas for reuse, so the
  level after a burst is the level before plus allocator slack, not
  strictly equal; the tolerance is the bound we measured and accept).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from .churn import changes
from .faultlab import ALLOWED, FORBIDDEN, FaultLab
from .inject import write_retrying
from .report import report
from .verify import desired_digests, exact, packets_match_oracle, rss_kib
from .watch import watching

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(180)]

BURST = 1000
RSS_TOLERANCE_KIB = 16 * 1024


async def test_burst_of_1000_changes(faultlab: FaultLab) -> None:
    fl, pipe = faultlab, faultlab.pipe
    assert pipe.controller is not None
    pid = pipe.controller.pid
    # warm-up: every code path and cache the burst uses has run once
    seen, _ = await write_retrying(pipe, changes(fl, 100, seed=1), concurrency=16)
    await pipe.wait_converged(seen, timeout=60)
    rss_before = rss_kib(pid)
    peak = rss_before

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_kib(pid))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample(), name="rss-sampler")
    ops = changes(fl, BURST, seed=2)
    async with watching(fl.run.lab, FORBIDDEN, ALLOWED[:1]) as w:
        t0 = time.monotonic()
        seen, retries = await write_retrying(pipe, ops, concurrency=16)
        t_written = time.monotonic()
        await pipe.wait_converged(seen, timeout=90)
        t_conv = time.monotonic()
        digests = await exact(pipe)
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    rss_after = rss_kib(pid)
    assert w.forbidden_allowed == 0, w.failures()
    assert retries == 0
    pairs, bad = await packets_match_oracle(pipe, sorted(fl.pods))
    assert bad == [], bad

    # a fresh controller computes the same desired state from the final cluster
    st_old = await pipe.status()
    await pipe.restart_controller()
    st_new = await pipe.wait_converged(timeout=60)
    assert desired_digests(st_new) == desired_digests(st_old) == digests
    assert await exact(pipe) == digests

    report("burst-1000", changes=BURST, write_seconds=round(t_written - t0, 2),
           converge_after_last_write_seconds=round(t_conv - t_written, 2),
           policies=st_old["totals"]["policies"], oracle_pairs=pairs, forbidden_probes=w.forbidden_tries,
           forbidden_allowed=w.forbidden_allowed, controller_rss_kib={"before": rss_before, "peak": peak,
                                                                        "after": rss_after},
           writer=st_old["writer"])
    assert rss_after - rss_before <= RSS_TOLERANCE_KIB, (rss_before, peak, rss_after)
