"""``kill -9`` in the middle of an apply, with real packets throughout.

A big change (a policy of ``BIG`` ipBlocks selecting x/web on node-0) is
written; the moment node-0's agent runs a kernel write (``ipset restore`` /
``iptables-restore``) the victims get SIGKILL: the agent, the controller
(while the agent is syncing), or both.  While they are down another change
is written.  Then the dead processes are started again and the test
asserts, with a prober running on the forbidden and allowed pairs the whole
time:

* no forbidden connection got through at any moment (also not from the
  half-written kernel state the dead agent left);
* while dead, the node keeps enforcing (forbidden pairs probed then too);
* after restart every node converges to exactly the desired state
  (controller, agent and kernel agree on the digest) and real probes
  match it.
"""

from __future__ import annotations

import time

import pytest

from .faultlab import ALLOWED, FORBIDDEN, FaultLab, big_policy, delete, put
from .inject import KillOnApply
from .report import report
from .verify import exact
from .watch import watching

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(150)]

BIG = 3000


def merged(*seen: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in seen:
        for k, v in s.items():
            out[k] = max(out.get(k, 0), v)
    return out


@pytest.mark.parametrize(("victims", "during", "after"), [
    pytest.param("agent", "ipset", 0.0, id="agent-as-ipset-restore-starts"),
    pytest.param("agent", "ipset", 0.005, id="agent-5ms-into-ipset-restore"),
    pytest.param("agent", "iptables", 0.0, id="agent-during-iptables-restore"),
    pytest.param("controller", "ipset", 0.0, id="controller-while-agent-applies"),
    pytest.param("both", "ipset", 0.0, id="agent-and-controller"),
])
async def test_sigkill_in_the_middle_of_an_apply(faultlab: FaultLab, victims: str, during: str,
                                                 after: float, request: pytest.FixtureRequest) -> None:
    fl, pipe, lab = faultlab, faultlab.pipe, faultlab.run.lab
    assert pipe.controller is not None
    agent = pipe.agents[0]
    chosen = {"agent": [agent], "controller": [pipe.controller], "both": [agent, pipe.controller]}[victims]
    async with watching(lab, FORBIDDEN, ALLOWED) as w:
        killer = KillOnApply(agent, chosen, during, after)
        try:
            seen = await pipe.write([put(big_policy("big", BIG))])
            writing = await killer.result()
        finally:
            await killer.cancel()
        assert writing is not None, f"node-0's agent never ran {during} restore"
        t_kill = time.monotonic()
        assert sorted(killer.killed) == sorted(lp.pid for lp in chosen)  # each was alive and got SIGKILL
        for lp in chosen:
            await lab.stop_process(lp)  # reap (already dead)
            assert lp.proc.returncode in (-9, 255), f"{lp.name} ended with {lp.proc.returncode}:\n{lp.log_tail(8)}"
        # dead: the kernel keeps enforcing what it had (probed now, and by the watch)
        assert await fl.observe_all(FORBIDDEN) == ["deny"] * len(FORBIDDEN)
        # a change while dead: the big policy replaced by another big one
        seen = merged(seen, await pipe.write([delete("big"), put(big_policy("big2", BIG, salt=50_000))]))
        t_restart = time.monotonic()
        if agent in chosen:  # first: the lab's liveness check looks at every agent
            await pipe.start_agent(0)
        if pipe.controller in chosen:
            await pipe.start_controller()
        await pipe.wait_converged(seen, timeout=60)
        t_conv = time.monotonic()
        digests = await exact(pipe)
        final = await fl.observe_all(FORBIDDEN + ALLOWED)
    assert w.forbidden_allowed == 0, w.failures()
    assert final == ["deny"] * len(FORBIDDEN) + ["allow"] * len(ALLOWED), final
    st = await pipe.status()
    assert {p["key"] for p in st["policies"]} == {"x/web", "x/vault", "x/big2"}
    started = [ln for ln in pipe.agents[0].log_tail(40).splitlines() if "dataplane started" in ln]
    report(f"sigkill-{request.node.callspec.id}", killed_during=" ".join(writing[:2]) + (f" (+{after * 1000:.0f} ms)" if after else ""),
           blocks=BIG,
           restarted_agent=started[-1].split("; ", 1)[-1] if started and agent in chosen else "",
           dead_seconds=round(t_restart - t_kill, 2), converge_seconds=round(t_conv - t_restart, 2),
           forbidden_probes=w.forbidden_tries, forbidden_allowed=w.forbidden_allowed,
           allowed_dropped=w.allowed_denied, probe_errors=w.errors, digests={k: v[:12] for k, v in digests.items()})
