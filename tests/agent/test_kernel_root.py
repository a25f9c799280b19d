"""The dataplane against the real kernel, inside network namespaces.

Each test builds its own namespaces (``netlab.Lab``) and removes them in
``finally``; iptables, ipset and conntrack run through ``ip netns exec``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from nodeagent.backend_detect import detect
from nodeagent.dataplane import Dataplane, DataplaneSettings, cleanup, read_view
from nodeagent.kernel import SubprocessKernel, Tools
from nodeagent.plan import make_plan
from nodeagent.restore_builder import expected_view
from stockade.state import FAMILIES, Chain, FamilyState, Hook, IPSet, NodeState, Rule, SetMatch, digest

from .netlab import Lab, sh
from .states import policy_state

pytestmark = [pytest.mark.root, pytest.mark.timeout(90),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")]

FLAVOURS = [pytest.param("nft", id="nft"), pytest.param("legacy", id="legacy")]
BACKENDS = [*FLAVOURS, pytest.param("python-iptables", id="python-iptables")]


@pytest.fixture
def bridged() -> Iterator[Lab]:
    lab = Lab(4, "bridged", subnet=0)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def routed() -> Iterator[Lab]:
    lab = Lab(3, "routed", subnet=0)
    try:
        yield lab
    finally:
        lab.close()


def dataplane(lab: Lab, tmp: str, flavour: str = "nft", **kw: object) -> Dataplane:
    k = SubprocessKernel(("ip", "netns", "exec", lab.node))
    return Dataplane(k, DataplaneSettings(backend=flavour, state_dir=tmp, bridged=lab.mode == "bridged",
                                          netns=lab.node, **kw))  # type: ignore[arg-type]


def saver(flavour: str) -> Tools:
    return Tools("nft" if flavour == "nft" else "legacy")


def rich_state(nflog_prefix: str = "stk drop \"x\"", odd_comment: str = "a'b\\c") -> NodeState:
    """Every rule feature the renderer knows, IPv4 and IPv6."""
    sets = {
        "stkip": IPSet("stkip", "hash:ip", "inet", frozenset({"198.18.0.2"}), counters=True),
        "stknet": IPSet("stknet", "hash:net", "inet", frozenset({"198.18.0.0/16", "198.18.3.7"}),
                        frozenset({"198.18.1.0/24"})),
        "stkport": IPSet("stkport", "hash:ip,port", "inet", frozenset({"198.18.0.2,tcp:8080", "198.18.0.2,sctp:9"})),
        "stkip6": IPSet("stkip6", "hash:ip", "inet6", frozenset({"2001:db8::2"})),
    }
    rules = (
        Rule("RETURN", ctstate=("ESTABLISHED", "RELATED")),
        Rule("DROP", proto="sctp", dport=(80, 80), sets=(SetMatch("stkip", ("src",)),), comment="ns/pol a"),
        Rule("RETURN", proto="udp", dport=(1000, 2000), sets=(SetMatch("stkport", ("dst", "dst"), True),)),
        Rule("MARK", set_mark=(0x10000, 0x10000), in_iface="cbr0", out_iface="veth+", physdev_is_bridged=True),
        Rule("RETURN", mark=(0x10000, 0x10000, False), physdev_is_bridged=False),
        Rule("RETURN", mark=(0x1, 0xFFFFFFFF, True), proto="tcp", sets=(SetMatch("stknet", ("src",)),)),
        Rule("NFLOG", nflog_group=5, nflog_prefix=nflog_prefix, limit="10/second"),
        Rule("JUMP", target="STOCKADE-SUB", comment=odd_comment),
        Rule("DROP", proto="tcp", dport=(1, 65535)),
    )
    v4 = FamilyState({"STOCKADE-FORWARD": Chain("STOCKADE-FORWARD", rules),
                      "STOCKADE-SUB": Chain("STOCKADE-SUB", (Rule("RETURN", proto="sctp"),))},
                     (Hook("FORWARD", "STOCKADE-FORWARD"), Hook("INPUT", "STOCKADE-SUB")))
    v6 = FamilyState({"STOCKADE-FORWARD": Chain("STOCKADE-FORWARD", (
        Rule("DROP", proto="tcp", dport=(22, 22), sets=(SetMatch("stkip6", ("src",)),)),))},
        (Hook("FORWARD", "STOCKADE-FORWARD"),))
    return NodeState("n1", sets, v4, v6)


@pytest.mark.parametrize("flavour", BACKENDS)
async def test_rules_read_back_exactly(routed: Lab, tmp_path: object, flavour: str) -> None:
    dp = dataplane(routed, str(tmp_path), flavour)
    await dp.start()
    st = rich_state("", "ns/x y") if flavour == "python-iptables" else rich_state()
    res = await dp.apply(st)
    assert res.ok, (res.error, res.failed_input)
    view = await read_view(dp.kernel, saver(flavour))
    want = expected_view(st)
    for fam in FAMILIES:
        for name, rules in want.family(fam).chains.items():
            assert [r.line for r in view.family(fam).chains[name]] == [r.line for r in rules]
    assert view.sets == want.sets
    assert make_plan(st, view).is_empty()
    assert (await dp.reconcile()).writes == 0


async def test_python_iptables_refuses_nflog_prefix(routed: Lab, tmp_path: object) -> None:
    dp = dataplane(routed, str(tmp_path), "python-iptables")
    await dp.start()
    res = await dp.apply(rich_state())
    assert not res.ok and "nflog-prefix" in res.error and res.failed_input.startswith("*filter")
    assert "STOCKADE" not in routed.run(routed.node, "iptables-legacy-save").stdout  # nothing half-written


async def test_bridge_nf_call_is_per_netns(bridged: Lab) -> None:
    other = Lab(1, "routed", subnet=9)
    try:
        other.run(other.node, "sysctl -qw net.bridge.bridge-nf-call-iptables=0")
        assert other.run(other.node, "cat /proc/sys/net/bridge/bridge-nf-call-iptables").stdout.strip() == "0"
        assert bridged.run(bridged.node, "cat /proc/sys/net/bridge/bridge-nf-call-iptables").stdout.strip() == "1"
    finally:
        other.close()


def _lab_state(lab: Lab, peers: set[int], proto: str = "tcp", port: int = 8080, selected: tuple[int, ...] = (0,),
               ) -> NodeState:
    return policy_state(selected=frozenset(lab.ips[i] for i in selected),
                        peers=frozenset(lab.ips[i] for i in peers), proto=proto, port=(port, port))  # type: ignore[arg-type]


@pytest.mark.parametrize("flavour", BACKENDS)
@pytest.mark.parametrize("mode", ["bridged", "routed"])
async def test_packets_follow_the_state(request: pytest.FixtureRequest, tmp_path: object, flavour: str,
                                        mode: str) -> None:
    lab: Lab = request.getfixturevalue(mode)
    lab.serve(0, "tcp", 8080)
    lab.serve(0, "udp", 5353)
    assert lab.can_reach(2, 0, "tcp", 8080)  # open before any policy
    dp = dataplane(lab, str(tmp_path), flavour)
    await dp.start()
    assert lab.can_reach(2, 0, "tcp", 8080)  # start() writes nothing
    res = await dp.apply(_lab_state(lab, {1}))
    assert res.ok, res.error
    assert lab.can_reach(1, 0, "tcp", 8080)
    assert not lab.can_reach(2, 0, "tcp", 8080)
    assert not lab.can_reach(1, 0, "udp", 5353)
    assert lab.can_reach(0, 1, "tcp", 8080, timeout=0.3) is False  # nothing listens there: just no crash
    res = await dp.apply(_lab_state(lab, {2}, proto="udp", port=5353))
    assert res.ok, res.error
    assert lab.can_reach(2, 0, "udp", 5353)
    assert not lab.can_reach(1, 0, "udp", 5353)
    assert not lab.can_reach(2, 0, "tcp", 8080)


async def test_drift_repaired_for_real(bridged: Lab, tmp_path: object) -> None:
    lab = bridged
    lab.serve(0, "tcp", 8080)
    dp = dataplane(lab, str(tmp_path))
    await dp.start()
    assert (await dp.apply(_lab_state(lab, {1}))).ok
    lab.run(lab.node, f"iptables-nft -F STOCKADE-POL-A && ipset del stkpeer {lab.ips[1]}")
    assert not lab.can_reach(1, 0, "tcp", 8080)  # drift: the allowed peer is cut off
    lab.run(lab.node, "iptables-nft -I FORWARD 1 -p udp -j RETURN")  # someone else's rule above our hook
    res = await dp.reconcile()
    assert res.ok and res.repairs > 0
    assert lab.can_reach(1, 0, "tcp", 8080)
    fwd = lab.run(lab.node, "iptables-nft -S FORWARD").stdout.splitlines()
    assert fwd[1].endswith("-j STOCKADE-FORWARD") and fwd[2] == "-A FORWARD -p udp -j RETURN"
    assert (await dp.reconcile()).writes == 0


async def test_tightening_cuts_established_connection(bridged: Lab, tmp_path: object) -> None:
    lab = bridged
    lab.serve(0, "tcp", 8080)
    dp = dataplane(lab, str(tmp_path))
    await dp.start()
    assert (await dp.apply(_lab_state(lab, {1, 2}))).ok
    code = (
        "import socket,sys,time\n"
        f"s=socket.create_connection(({lab.ips[0]!r}, 8080), timeout=1)\n"
        "print('up', flush=True)\n"
        "while True:\n"
        "    sys.stdin.readline()\n"
        "    try:\n        s.sendall(b'p'); ok = s.recv(1) == b'p'\n"
        "    except OSError: ok = False\n"
        "    print('ok' if ok else 'dead', flush=True)\n")
    p = subprocess.Popen(lab.nsx(lab.pods[2], "python3", "-c", code), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    lab.procs.append(p)
    assert p.stdout is not None and p.stdin is not None

    def ping() -> str:
        p.stdin.write("\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]
        return p.stdout.readline().strip()  # type: ignore[union-attr]

    assert p.stdout.readline().strip() == "up"
    assert ping() == "ok"
    res = await dp.apply(_lab_state(lab, {1}))  # pod 2 is no longer an allowed peer
    assert res.ok and res.conntrack_cuts > 0
    assert ping() == "dead"
    assert lab.can_reach(1, 0, "tcp", 8080)


async def test_restart_has_no_open_window(bridged: Lab, tmp_path: object) -> None:
    lab = bridged
    lab.serve(0, "tcp", 8080)
    dp = dataplane(lab, str(tmp_path))
    await dp.start()
    assert (await dp.apply(_lab_state(lab, {1}))).ok
    leaks: list[float] = []
    tries = 0
    stop = threading.Event()

    def probe() -> None:
        nonlocal tries
        while not stop.is_set():
            tries += 1
            if lab.can_reach(2, 0, "tcp", 8080, timeout=0.2):
                leaks.append(time.monotonic())

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    try:
        await asyncio.sleep(0.3)
        await dp.flush_persisted()
        del dp  # the agent "dies": nothing is flushed
        dp2 = dataplane(lab, str(tmp_path))
        report = await dp2.start()
        assert dp2.applied_digest == digest(_lab_state(lab, {1})), report
        assert (await dp2.apply(_lab_state(lab, {1}))).writes == 0
        res = await dp2.apply(_lab_state(lab, {1, 3}))  # a change after the restart
        assert res.ok
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        t.join(timeout=5)
    assert tries > 2 and not leaks


@pytest.mark.parametrize("flavour", BACKENDS)
async def test_cleanup_leaves_other_tools_alone(routed: Lab, tmp_path: object, flavour: str) -> None:
    lab = routed
    ipt = f"iptables-{saver(flavour).flavour}"
    lab.run(lab.node, f"ipset create kube-keep hash:ip && ipset add kube-keep 203.0.113.5 && "
                      f"{ipt} -N KUBE-KEEP && {ipt} -A KUBE-KEEP -s 192.0.2.1 -j DROP && {ipt} -A FORWARD -j KUBE-KEEP && "
                      f"{ipt} -A INPUT -m set --match-set kube-keep src -j DROP")
    before = lab.run(lab.node, f"{ipt}-save -t filter | grep -v '^#'; ipset save kube-keep").stdout
    dp = dataplane(lab, str(tmp_path), flavour)
    await dp.start()
    assert (await dp.apply(rich_state("", "c") if flavour == "python-iptables" else rich_state())).ok
    summary = await cleanup(dp.kernel)
    assert not summary["errors"] and summary["sets"] == 4 and summary["chains"] == 3
    after = lab.run(lab.node, f"{ipt}-save -t filter | grep -v '^#'; ipset save kube-keep").stdout
    assert after == before
    assert "STOCKADE" not in lab.run(lab.node, f"ip6tables-{saver(flavour).flavour}-save").stdout
    assert [n for n in lab.run(lab.node, "ipset list -n").stdout.split() if n.startswith("stk")] == []


async def test_more_than_65536_members_for_real(routed: Lab, tmp_path: object) -> None:
    base = ipaddress.ip_address("198.18.0.0")
    peers = frozenset(str(base + i + 1) for i in range(70000))
    dp = dataplane(routed, str(tmp_path))
    await dp.start()
    res = await dp.apply(policy_state(peers=peers))
    assert res.ok, res.error[:500]
    more = frozenset(str(base + i + 1) for i in range(70000, 120000))
    res = await dp.apply(policy_state(peers=peers | more))
    assert res.ok, res.error[:500]
    out = routed.run(routed.node, "ipset list stkpeer -t").stdout
    assert "Number of entries: 120000" in out
    assert (await dp.reconcile()).writes == 0


async def test_switch_round_for_real(routed: Lab, tmp_path: object) -> None:
    lab = routed
    lab.serve(0, "tcp", 8080)
    lab.serve(0, "tcp", 80)
    dp = dataplane(lab, str(tmp_path))
    await dp.start()
    assert (await dp.apply(_lab_state(lab, {1}))).ok
    res = await dp.apply(_lab_state(lab, {2}, port=80))  # peers and port change together
    assert res.ok and res.plan["sets_switched"] == 1, res
    assert lab.can_reach(2, 0, "tcp", 80) and not lab.can_reach(1, 0, "tcp", 8080)
    assert not lab.can_reach(2, 0, "tcp", 8080)
    assert "~" not in lab.run(lab.node, "ipset list -n").stdout
    assert (await dp.reconcile()).writes == 0


async def test_backend_detection_follows_existing_rules(routed: Lab) -> None:
    k = SubprocessKernel(("ip", "netns", "exec", routed.node))
    assert (await detect(k)).flavour == "nft"
    routed.run(routed.node, "iptables-legacy -A FORWARD -s 192.0.2.1 -j DROP && iptables-legacy -A INPUT -s 192.0.2.2 -j DROP")
    assert (await detect(k)).flavour == "legacy"
    routed.run(routed.node, "iptables-nft -t mangle -N KUBE-IPTABLES-HINT")
    assert (await detect(k)).flavour == "nft"


def test_lab_leaves_nothing_behind() -> None:
    lab = Lab(1, "routed", subnet=7)
    names = [lab.node, *lab.pods]
    lab.close()
    listed = sh(["ip", "netns", "list"]).stdout
    assert not any(n in listed for n in names)




async def test_set_grows_past_its_size_by_swap(routed: Lab, tmp_path: object) -> None:
    lab = routed
    lab.serve(0, "tcp", 8080)
    dp = dataplane(lab, str(tmp_path))
    await dp.start()
    assert (await dp.apply(_lab_state(lab, {1}))).ok
    base = ipaddress.ip_address("198.19.0.0")
    many = frozenset(str(base + i + 1) for i in range(60000)) | {lab.ips[1]}
    res = await dp.apply(policy_state(selected=frozenset({lab.ips[0]}), peers=many))
    assert res.ok and res.plan["sets_replaced"] == 1, res
    head = lab.run(lab.node, "ipset list stkpeer -t").stdout
    assert "maxelem 131072" in head and "References: 1" in head and "Number of entries: 60001" in head
    assert lab.can_reach(1, 0, "tcp", 8080) and not lab.can_reach(2, 0, "tcp", 8080)
    assert "~" not in lab.run(lab.node, "ipset list -n").stdout


CHILD = r"""
import asyncio, sys
sys.path.insert(0, {root!r})
from nodeagent.dataplane import Dataplane, DataplaneSettings
from nodeagent.kernel import SubprocessKernel
from tests.agent.states import policy_state
async def main():
    dp = Dataplane(SubprocessKernel(("ip", "netns", "exec", {ns!r})), DataplaneSettings(backend="nft", state_dir={tmp!r}))
    await dp.start()
    res = await dp.apply(policy_state(selected=frozenset({{{sel!r}}}), peers=frozenset({{{peer!r}}})))
    await dp.flush_persisted()
    print("applied" if res.ok else res.error, flush=True)
    await dp.run_periodic_reconcile()
asyncio.run(main())
"""


async def test_killed_agent_leaves_rules_and_is_adopted(bridged: Lab, tmp_path: object) -> None:
    lab = bridged
    lab.serve(0, "tcp", 8080)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = CHILD.format(root=root, ns=lab.node, tmp=str(tmp_path), sel=lab.ips[0], peer=lab.ips[1])
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lab.procs.append(p)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "applied"
    p.kill()  # SIGKILL: no handler, no cleanup
    p.wait(timeout=5)
    assert lab.can_reach(1, 0, "tcp", 8080) and not lab.can_reach(2, 0, "tcp", 8080)
    dp = dataplane(lab, str(tmp_path))
    await dp.start()
    assert dp.applied_digest == digest(_lab_state(lab, {1}))
    assert (await dp.apply(_lab_state(lab, {1}))).writes == 0


async def test_counters_through_save_and_libiptc_agree(routed: Lab, tmp_path: object) -> None:
    lab = routed
    lab.serve(0, "tcp", 8080)
    k = SubprocessKernel(("ip", "netns", "exec", lab.node))
    dp = Dataplane(k, DataplaneSettings(backend="python-iptables", state_dir=str(tmp_path), netns=lab.node,
                                        iptc_counters=True))
    await dp.start()
    assert (await dp.apply(_lab_state(lab, {1}))).ok
    assert lab.can_reach(1, 0, "tcp", 8080) and not lab.can_reach(2, 0, "tcp", 8080)
    via_iptc = (await dp.read_counters())["rules"]["inet"]
    dp2 = dataplane(lab, str(tmp_path), "legacy")
    await dp2.start()
    via_save = (await dp2.read_counters())["rules"]["inet"]
    assert via_iptc == via_save
    marked = via_save["STOCKADE-POL-A"][0]
    assert marked[1] > 0  # the allowed connection's packets were counted
    dp.close()
