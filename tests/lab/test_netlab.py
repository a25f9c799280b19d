"""The lab on the real kernel: topology, echo servers, prober, teardown.

No Stockade pipeline here: policy is a hand-made iptables DROP inside a node
namespace, so these tests show the lab itself tells allow from deny on every
path (same node, cross node, outside host both ways, hostNetwork).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from stockade.lab import netns
from stockade.lab.cluster import Lab
from stockade.lab.prober import Probe

from .conftest import leftovers, root_namespace_traces

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

PATHS = [
    ("d/a", "d/b", 80, "TCP"),  # same node
    ("d/a", "d/b", 53, "UDP"),
    ("d/a", "d/c", 80, "TCP"),  # cross node
    ("d/c", "d/a", 53, "UDP"),
    ("external:internet", "d/a", 80, "TCP"),  # outside host -> pod
    ("d/c", "external:internet", 53, "UDP"),  # pod -> outside host
    ("d/a", "d/h", 8080, "TCP"),  # pod -> hostNetwork pod
    ("d/h", "d/a", 80, "TCP"),  # hostNetwork pod -> pod (source = node IP)
]


def iptables(lab: Lab, node: int, *args: str) -> None:
    subprocess.run(["ip", "netns", "exec", lab.plan.node_ns(node), "iptables", "-w", *args], check=True,
                   capture_output=True, timeout=20)


async def test_every_path_is_allowed_without_policy(lab2: Lab) -> None:
    out = await lab2.prober.probe_all([lab2.probe_of(*p) for p in PATHS])
    assert [(o.observed, o.error) for o in out] == [("allow", "")] * len(PATHS)
    assert root_namespace_traces() == []


async def test_bridged_traffic_crosses_the_node_forward_chain(lab2: Lab) -> None:
    """A DROP in node 0's FORWARD for pod b's address denies b from its
    neighbour on the same bridge, from the other node and from outside; pod
    a is unaffected; removing the rule restores access."""
    rule = ["FORWARD", "-d", "198.18.0.3", "-j", "DROP"]
    iptables(lab2, 0, "-I", *rule)
    probes = [("d/a", "d/b", 80, "TCP"), ("d/a", "d/b", 53, "UDP"), ("d/c", "d/b", 80, "TCP"),
              ("external:internet", "d/b", 80, "TCP"), ("d/c", "d/a", 80, "TCP")]
    out = await lab2.prober.probe_all([lab2.probe_of(*p) for p in probes])
    assert [o.observed for o in out] == ["deny", "deny", "deny", "deny", "allow"]
    assert all(o.error == "" for o in out)
    iptables(lab2, 0, "-D", *rule)
    out = await lab2.prober.probe_all([lab2.probe_of(*p) for p in probes])
    assert [o.observed for o in out] == ["allow"] * 5


async def test_egress_drop_to_outside_host(lab2: Lab) -> None:
    iptables(lab2, 1, "-I", "FORWARD", "-s", "198.18.1.2", "-d", "192.0.2.10", "-j", "DROP")
    out = await lab2.prober.probe_all([lab2.probe_of("d/c", "external:internet", 53, "UDP"),
                                       lab2.probe_of("d/a", "external:internet", 53, "UDP")])
    assert [o.observed for o in out] == ["deny", "allow"]


async def test_refused_and_sctp_are_errors_not_denials(lab2: Lab) -> None:
    refused, sctp = await lab2.prober.probe_all([lab2.probe_of("d/a", "d/b", 81, "TCP"),
                                                 lab2.probe_of("d/a", "d/b", 80, "SCTP")])
    assert refused.observed is None and "refused" in refused.error
    assert sctp.observed is None and "SCTP" in sctp.error


async def test_pod_delete_and_address_reuse(lab2: Lab) -> None:
    await lab2.remove_pod("d/b")
    assert not netns.list_namespaces(lab2.plan.pod_ns(1))
    [gone] = await lab2.prober.probe_all([Probe(lab2.plan.pod_ns(0), "198.18.0.3", 80, "TCP")], timeout=0.3)
    assert gone.observed != "allow"
    await lab2.add_pod("d/b2", 0, "198.18.0.3", False, [(9000, "TCP")])
    [ok] = await lab2.prober.probe_all([lab2.probe_of("d/c", "d/b2", 9000, "TCP")])
    assert ok.observed == "allow"


async def test_a_reused_address_is_reachable_at_once_by_peers_that_knew_the_old_pod(lab2: Lab) -> None:
    """A new pod with a deleted pod's address has another MAC; peers that
    talked to the old pod (same bridge, the node) must reach the new one
    at once, not after their neighbour entry expires (the lab announces a
    new pod with a gratuitous ARP, like the bridge CNI)."""
    before = await lab2.prober.probe_all([lab2.probe_of("d/a", "d/b", 80, "TCP"),
                                          lab2.probe_of("d/c", "d/b", 80, "TCP")])
    assert [o.observed for o in before] == ["allow", "allow"]
    await lab2.remove_pod("d/b")
    await lab2.add_pod("d/b2", 0, "198.18.0.3", False, [(80, "TCP")])
    after = await lab2.prober.probe_all([lab2.probe_of("d/a", "d/b2", 80, "TCP"),
                                         lab2.probe_of("d/c", "d/b2", 80, "TCP")], timeout=1.0)
    assert [o.observed for o in after] == ["allow", "allow"], [o.error for o in after]


async def test_many_probes_at_once_are_quick(lab2: Lab) -> None:
    pods = ["d/a", "d/b", "d/c"]
    probes = [lab2.probe_of(s, d, port, proto) for s in pods for d in pods
              for port, proto in ((80, "TCP"), (53, "UDP"))] * 5
    out = await lab2.prober.probe_all(probes)
    assert {o.observed for o in out} == {"allow"}


def _lab_up() -> tuple[subprocess.Popen[str], dict[str, object]]:
    p = subprocess.Popen([sys.executable, "-m", "stockade.cli", "lab", "up", "--nodes", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line, "lab up printed nothing"
    return p, json.loads(line)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_lab_removes_everything(sig: signal.Signals) -> None:
    p, info = _lab_up()
    try:
        runid = str(info["runid"])
        assert leftovers(runid)
        p.send_signal(sig)
        assert p.wait(timeout=20) != 0
        assert leftovers(runid) == []
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_killed_lab_is_removed_by_lab_clean() -> None:
    p, info = _lab_up()
    runid = str(info["runid"])
    try:
        pids = [pid for ns in netns.list_namespaces(f"stklab-{runid}-") for pid in netns.pids_in(ns)]
        assert pids, "echo servers should run inside the lab"
        p.kill()
        p.wait(timeout=10)
    finally:
        r = subprocess.run([sys.executable, "-m", "stockade.cli", "lab", "clean"], capture_output=True,
                           text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert leftovers(runid) == []
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


async def test_port_forward_relays_from_localhost_into_the_lab(lab2: Lab) -> None:
    import asyncio

    from stockade.lab.portforward import PortForward

    pf = await PortForward(lab2.socks, lab2.plan.pod_ns(2), "198.18.0.2", 80).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", pf.listen_port)
        writer.write(b"hello lab\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readline(), 5) == b"hello lab\n"
        writer.close()
    finally:
        await pf.close()


async def test_lab_clean_leaves_live_runs_alone(lab2: Lab) -> None:
    from stockade.lab.cleanup import clean

    rep = clean()
    assert lab2.runid in rep.skipped_runs
    assert not [n for n in rep.namespaces if lab2.runid in n]
    [o] = await lab2.prober.probe_all([lab2.probe_of("d/a", "d/c", 80, "TCP")])
    assert o.observed == "allow"
