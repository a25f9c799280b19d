"""Emulator -> controller -> agents, all real parts over real sockets.

Agents are the wire engineer's ``AgentService`` with the in-memory
dataplane kernel (``nodeagent.fake_kernel.FakeKernel``), which counts every
kernel-mutating command.  Covered: convergence of every node, a pod change
reaching the kernels, a malformed policy leaving enforcement untouched, a
controller restart and a move to another replica costing no kernel write.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.controller.conftest import NODES, StartAgents, StartController, in_sync
from tests.controller.kube import Kube, eventually, pod, policy
from tests.controller.test_controller import BROKEN_POLICY, seed_cluster

pytestmark = pytest.mark.timeout(60)

async def test_cluster_converges_and_changes_reach_the_kernels(
        kube: Kube, start_controller: StartController, start_agents: StartAgents) -> None:
    await seed_cluster(kube)
    ctl = await start_controller()
    agents = await start_agents([f"127.0.0.1:{ctl.grpc_port}"])
    await eventually(lambda: in_sync(ctl, agents), timeout=15, what="agents in sync")
    n1 = agents[0]
    assert "10.2.0.9" in n1.members()  # the allowed client's IP is in n1's peer set (web-1 lives on n1)
    await eventually(lambda: all(n["connected"] and n["in_sync"] for n in ctl.status()["nodes"]),
                     what="controller sees every agent in sync")
    # A new client pod: its IP must reach n1's kernel.
    sent_before = REGISTRY.get_sample_value("stockade_event_to_send_seconds_count") or 0.0
    t0 = time.monotonic()
    await kube.create(pod("shop", "client-2", {"app": "client"}, "n1", "10.1.0.77"))
    await eventually(lambda: "10.1.0.77" in n1.members(), timeout=10, what="new member applied")
    print(f"\nevent -> kernel (create to fake-kernel member): {(time.monotonic() - t0) * 1000:.1f} ms")
    await eventually(lambda: in_sync(ctl, agents), timeout=10)
    # the event-to-send latency was measured for that change
    assert (REGISTRY.get_sample_value("stockade_event_to_send_seconds_count") or 0.0) > sent_before


async def test_malformed_policy_changes_no_kernel(
        kube: Kube, start_controller: StartController, start_agents: StartAgents) -> None:
    await seed_cluster(kube)
    ctl = await start_controller()
    agents = await start_agents([f"127.0.0.1:{ctl.grpc_port}"])
    await eventually(lambda: in_sync(ctl, agents), timeout=15)
    await asyncio.sleep(0.3)  # the post-apply reconcile
    writes = [a.kernel.writes for a in agents]
    await kube.create(policy("shop", "broken", BROKEN_POLICY))
    await eventually(lambda: "shop/broken" in ctl.writer.invalid)
    await asyncio.sleep(0.3)
    assert [a.kernel.writes for a in agents] == writes, "a malformed policy changed a kernel"
    # Enforcement of the others continues: a later valid change still flows.
    await kube.create(pod("shop", "client-3", {"app": "client"}, "n2", "10.2.0.33"))
    await eventually(lambda: "10.2.0.33" in agents[0].members(), timeout=10)
    # n2's state does not depend on the new client (web-2 there allows by label, the set is cluster-wide),
    # but whatever changed, both agents stay in sync with the valid policies.
    await eventually(lambda: in_sync(ctl, agents), timeout=10)
    assert agents[0].kernel.writes > writes[0]
    assert ctl.status()["totals"]["invalid_policies"] == 1


async def test_controller_restart_and_replica_move_cost_no_kernel_write(
        kube: Kube, start_controller: StartController, start_agents: StartAgents) -> None:
    await seed_cluster(kube)
    a = await start_controller("replica-a")
    b = await start_controller("replica-b")
    agents = await start_agents([f"127.0.0.1:{a.grpc_port}", f"127.0.0.1:{b.grpc_port}"])
    await eventually(lambda: in_sync(a, agents), timeout=15, what="in sync with replica a")
    await asyncio.sleep(0.3)  # let the post-apply reconcile settle
    writes = [x.kernel.writes for x in agents]
    digests = [x.digest() for x in agents]
    # Replica a goes away: agents move to b, which computed identical states.
    port_a = a.grpc_port
    await a.stop()
    await eventually(lambda: all(n["connected"] for n in b.distributor.nodes_status() if n["node"] in NODES),
                     timeout=15, what="agents moved to replica b")
    await eventually(lambda: in_sync(b, agents), timeout=10)
    assert [x.digest() for x in agents] == digests
    assert [x.kernel.writes for x in agents] == writes, "moving to another replica wrote to a kernel"
    assert b.distributor.stats()["in_syncs_sent"] >= len(NODES)
    # A restarted replica a (same port): agents that come back write nothing either.
    await b.stop()
    a2 = await start_controller("replica-a", grpc_port=port_a)
    await eventually(lambda: all(n["connected"] for n in a2.distributor.nodes_status() if n["node"] in NODES),
                     timeout=15, what="agents back on restarted replica a")
    await eventually(lambda: in_sync(a2, agents), timeout=10)
    assert [x.kernel.writes for x in agents] == writes, "a controller restart wrote to a kernel"


async def test_agents_get_nothing_before_every_kind_is_listed(
        emu: Any, kube: Kube, start_controller: StartController, start_agents: StartAgents) -> None:
    """Agents connected to a controller that has listed only some kinds must
    receive nothing: a partial view would open or close traffic wrongly."""
    await seed_cluster(kube)
    emu.faults.fail_next(30, code=500, path_prefix="/apis/networking.k8s.io")
    ctl = await start_controller(wait_ready=False)
    agents = await start_agents([f"127.0.0.1:{ctl.grpc_port}"])
    await eventually(lambda: all(n["connected"] for n in ctl.distributor.nodes_status()) and
                     len(ctl.distributor.nodes_status()) == 2 and ctl.watchers["Pod"].listed, what="agents connected")
    await asyncio.sleep(0.2)
    assert not ctl.is_ready()
    assert [a.kernel.writes for a in agents] == [0, 0] and [a.digest() for a in agents] == ["", ""]
    emu.faults.clear()
    await asyncio.wait_for(ctl.writer.ready_event.wait(), 10)
    await eventually(lambda: in_sync(ctl, agents), timeout=10, what="in sync after ready")
    assert all(a.kernel.writes > 0 for a in agents)
