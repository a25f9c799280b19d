"""Node agent dataplane benchmark: prints figures (no pass/fail).

A node with 110 pods, 300 policies (about 1,500 rules) and 50,000 set
members, applied inside a network namespace this script creates (and
removes).  For each backend (nft, legacy, python-iptables):

* floor: ``ipset restore`` + ``iptables-restore`` of the same final state,
  run directly (the kernel's own cost; target: agent within 1.3x of it);
* initial apply through the Dataplane, and its ratio to the floor (the
  state's digest handed over as the agent's stream client does, which
  computed it to verify the snapshot; that computation is printed apart);
* no-op reconcile (target <= 100 ms, zero kernel writes);
* one member added (target <= 15 ms desired state -> kernel, no iptables write);
* one policy's rules changed (only its chain rewritten);
* reading counters (iptables-save -c + ipset member counters);
and once: the agent's RSS when idle (target <= 60 MB), and with --loops
the subprocess cost on asyncio vs uvloop.

    sudo python benchmarks/agent_bench.py [--backends nft,legacy,python-iptables] [--repeat 5] [--loops]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nodeagent import ipset_render
from nodeagent.dataplane import Dataplane, DataplaneSettings, cleanup
from nodeagent.kernel import CmdResult, SubprocessKernel, Tools
from nodeagent.restore_builder import FamilyWrite, expected_family, iptables_restore_text
from stockade.state import (
    Chain,
    FamilyState,
    Hook,
    IPSet,
    NodeDelta,
    NodeState,
    Rule,
    SetMatch,
    SetMembersDelta,
    apply_delta,
    count,
)
from stockade.wire.digest import Carried

MARK = 0x10000


def build_state(pods: int = 110, policies: int = 300, members: int = 50_000) -> NodeState:
    base = ipaddress.ip_address("198.18.0.0")
    pod_ips = [str(base + 2 + i) for i in range(pods)]
    big, big_size = 20, 2000
    sel_total = policies * 3
    small_size = max(1, (members - big * big_size - sel_total) // (policies - big))
    nxt = 1024
    sets: dict[str, IPSet] = {}
    fwd: list[Rule] = [Rule("RETURN", ctstate=("RELATED", "ESTABLISHED"))]
    drops: list[Rule] = []
    chains: dict[str, Chain] = {}
    for i in range(policies):
        sel = f"stksel{i:04d}"
        peer = f"stkpeer{i:04d}"
        sets[sel] = IPSet(sel, "hash:ip", "inet", frozenset(pod_ips[(i * 7 + k) % pods] for k in range(3)))
        n = big_size if i < big else small_size
        sets[peer] = IPSet(peer, "hash:ip", "inet", frozenset(str(base + nxt + k) for k in range(n)))
        nxt += n
        pc = f"STOCKADE-P{i:04d}"
        chains[pc] = Chain(pc, (
            Rule("MARK", proto="tcp", dport=(8000 + i % 100, 8000 + i % 100), sets=(SetMatch(peer, ("src",)),),
                 set_mark=(MARK, MARK), comment=f"ns{i % 17}/policy-{i}"),
            Rule("MARK", proto="udp", dport=(53, 53), sets=(SetMatch(peer, ("src",)),), set_mark=(MARK, MARK)),
            Rule("MARK", proto="sctp", dport=(9000, 9100), sets=(SetMatch(peer, ("src",)),), set_mark=(MARK, MARK)),
        ))
        fwd.append(Rule("JUMP", target=pc, sets=(SetMatch(sel, ("dst",)),)))
        drops.append(Rule("DROP", sets=(SetMatch(sel, ("dst",)),), mark=(MARK, MARK, True)))
    chains["STOCKADE-FORWARD"] = Chain("STOCKADE-FORWARD", (*fwd, *drops))
    return NodeState("bench-node", sets, FamilyState(chains, (Hook("FORWARD", "STOCKADE-FORWARD"),)))


class CountingKernel(SubprocessKernel):
    def __init__(self, prefix: Sequence[str]) -> None:
        super().__init__(prefix)
        self.argvs: list[tuple[str, ...]] = []

    async def run(self, argv: Sequence[str], stdin: str | None = None, *, timeout: float = 30.0) -> CmdResult:
        self.argvs.append(tuple(argv))
        return await super().run(argv, stdin, timeout=timeout)


def sh(argv: list[str], stdin: str | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - t0


def floor(state: NodeState, flavour: str) -> tuple[float, float]:
    lines: list[str] = []
    for s in state.sets.values():
        lines += ipset_render.full_lines(s)
    ipset_text = "\n".join(lines) + "\n"
    fam = expected_family("inet", state.v4)
    ipt_text = iptables_restore_text(FamilyWrite(dict(fam.chains), (), (), {b: h for b, h in fam.hooks.items() if h}))
    t_ipset = sh(["ipset", "restore"], ipset_text)
    t_ipt = sh([Tools(flavour).restore("inet"), "--noflush", "-w", "5"], ipt_text)  # type: ignore[arg-type]
    return t_ipset, t_ipt


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


async def bench_backend(backend: str, state: NodeState, repeat: int) -> dict[str, Any]:
    """Runs inside the benchmark's network namespace, like the agent on its
    node (hostNetwork): commands run directly, no ``ip netns exec``."""
    flavour = "nft" if backend == "nft" else "legacy"
    k = CountingKernel(())
    out: dict[str, Any] = {"backend": backend}
    floors: list[float] = []
    fl_i: list[float] = []
    fl_t: list[float] = []
    applies: list[float] = []
    ratios: list[float] = []
    digests: list[float] = []
    for _ in range(repeat):  # interleaved, so a load change on the machine hits both alike
        await cleanup(k)
        a, b = floor(state, flavour)
        floors.append(a + b)
        fl_i.append(a)
        fl_t.append(b)
        await cleanup(k)
        with tempfile.TemporaryDirectory() as tmp:
            dp = Dataplane(k, DataplaneSettings(backend=backend, state_dir=tmp, cut_conntrack=True))
            await dp.start()
            t0 = time.perf_counter()
            verified = Carried.of(state).digest  # the client's snapshot check, before it hands the state over
            digests.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            res = await dp.apply(state, verified)
            applies.append(time.perf_counter() - t0)
            assert res.ok, res.error[:2000]
            await dp.flush_persisted()
            dp.close()
        ratios.append(applies[-1] / floors[-1])
    await cleanup(k)
    out["floor_ipset"], out["floor_iptables"] = statistics.median(fl_i), statistics.median(fl_t)
    out["floor"] = statistics.median(floors)
    out["initial_apply"] = statistics.median(applies)
    out["ratio"] = statistics.median(ratios)
    out["snapshot_digest"] = statistics.median(digests)
    with tempfile.TemporaryDirectory() as tmp:
        dp = Dataplane(k, DataplaneSettings(backend=backend, state_dir=tmp))
        await dp.start()
        assert (await dp.apply(state)).ok
        n0 = len(k.argvs)
        recs = []
        writes = 0
        for _ in range(repeat):
            t0 = time.perf_counter()
            r = await dp.reconcile()
            recs.append(time.perf_counter() - t0)
            writes += r.writes
        out["noop_reconcile"], out["noop_reconcile_writes"] = statistics.median(recs), writes
        out["noop_reconcile_commands"] = len(k.argvs) - n0
        adds, ipt_writes, cur, deltas = [], 0, state, []
        for i in range(2 * repeat):  # the small set stkpeer0100, then the 2,000-member stkpeer0000
            name = "stkpeer0100" if i < repeat else "stkpeer0000"
            delta = NodeDelta(cur.node, set_members=(SetMembersDelta(name, frozenset({f"198.19.250.{i + 1}"})),))
            t0 = time.perf_counter()
            cur = apply_delta(cur, delta)  # as the agent's stream client makes the new state
            deltas.append(time.perf_counter() - t0)
            n0 = len(k.argvs)
            t0 = time.perf_counter()
            r = await dp.apply(cur)
            adds.append(time.perf_counter() - t0)
            assert r.ok and r.writes == 1, r
            ipt_writes += sum(1 for a in k.argvs[n0:] if "restore" in a[0])
        out["member_add_big"] = statistics.median(adds[repeat:])
        out["member_add_apply_delta"] = statistics.median(deltas)
        adds = adds[:repeat]
        recs, writes = [], 0
        for _ in range(repeat):  # desired sets now as apply_delta made them; the kernel read as frozensets
            t0 = time.perf_counter()
            r = await dp.reconcile()
            recs.append(time.perf_counter() - t0)
            writes += r.writes
        out["noop_reconcile_after"], out["noop_reconcile_after_writes"] = statistics.median(recs), writes
        out["member_add"], out["member_add_iptables_writes"] = statistics.median(adds), ipt_writes
        chg, chains_written = [], 0
        for i in range(repeat):
            pc = cur.v4.chains["STOCKADE-P0007"]
            rules = (dataclasses.replace(pc.rules[0], dport=(7000 + i, 7000 + i)), *pc.rules[1:])
            chains = dict(cur.v4.chains)
            chains[pc.name] = Chain(pc.name, rules)
            cur = dataclasses.replace(cur, v4=FamilyState(chains, cur.v4.hooks))
            t0 = time.perf_counter()
            r = await dp.apply(cur)
            chg.append(time.perf_counter() - t0)
            assert r.ok, r.error
            chains_written = max(chains_written, r.plan.get("chains_written", 0))
        out["policy_change"], out["policy_change_chains_written"] = statistics.median(chg), chains_written
        t0 = time.perf_counter()
        c = await dp.read_counters()
        out["read_counters"] = time.perf_counter() - t0
        out["counter_rules"] = sum(len(v) for v in c["rules"]["inet"].values())
        if backend == "python-iptables":
            dpc = Dataplane(k, DataplaneSettings(backend=backend, state_dir=tmp, iptc_counters=True))
            await dpc.start()
            await dpc.apply(cur)
            ts = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                c2 = await dpc.read_counters()
                ts.append(time.perf_counter() - t0)
            assert {n: len(v) for n, v in c2["rules"]["inet"].items()} == {n: len(v) for n, v in c["rules"]["inet"].items()}
            out["read_counters_libiptc"] = statistics.median(ts)
            dpc.close()
    await cleanup(k)
    return out


RSS_CHILD = r"""
import asyncio, gc, sys, tempfile, os
sys.path.insert(0, {root!r})
sys.path.insert(0, {root!r} + "/benchmarks")
from agent_bench import build_state
from nodeagent.dataplane import Dataplane, DataplaneSettings
from nodeagent.kernel import SubprocessKernel
async def main():
    st = build_state()
    dp = Dataplane(SubprocessKernel(), DataplaneSettings(backend="nft", state_dir=tempfile.mkdtemp()))
    await dp.start()
    r = await dp.apply(st)
    assert r.ok, r.error
    await dp.reconcile()
    gc.collect()
    await asyncio.sleep(1.0)
    for line in open("/proc/self/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            print(line.strip(), flush=True)
asyncio.run(main())
"""


def rss(ns: str) -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", RSS_CHILD.format(root=root)],
                       capture_output=True, text=True, timeout=300)
    return (p.stdout.strip() or p.stderr.strip()[-500:]).replace("\n", ", ")


LOOP_CHILD = r"""
import asyncio, sys
sys.path.insert(0, {root!r})
if {loop!r} == "uvloop":
    import uvloop; uvloop.install()
from nodeagent.loop_choice import spawn_cost, pipe_cost
async def main():
    print(f"{{await spawn_cost(200):.2f}} {{await pipe_cost():.2f}}")
asyncio.run(main())
"""


def loops() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for loop in ("asyncio", "uvloop", "asyncio", "uvloop"):
        p = subprocess.run([sys.executable, "-c", LOOP_CHILD.format(root=root, loop=loop)], capture_output=True,
                           text=True, timeout=120)
        spawn, pipe = p.stdout.split()
        print(f"loop {loop:8s}: spawn+communicate {spawn} ms, 2 MB through cat {pipe} ms")


def report(backend: str, r: dict[str, Any], repeat: int) -> None:
    print(f"[{backend}] floor {ms(r['floor'])} (ipset {ms(r['floor_ipset'])} + iptables "
          f"{ms(r['floor_iptables'])}); initial apply {ms(r['initial_apply'])} = {r['ratio']:.2f}x floor "
          f"(+ the client's snapshot digest {ms(r['snapshot_digest'])})")
    print(f"[{backend}] no-op reconcile {ms(r['noop_reconcile'])}, {r['noop_reconcile_writes']} writes "
          f"({r['noop_reconcile_commands']} read commands over {repeat} runs)")
    print(f"[{backend}] no-op reconcile after the member changes {ms(r['noop_reconcile_after'])}, "
          f"{r['noop_reconcile_after_writes']} writes")
    print(f"[{backend}] one member added {ms(r['member_add'])} (to a 2,000-member set {ms(r['member_add_big'])}), "
          f"iptables writes {r['member_add_iptables_writes']} (+ the client's apply_delta "
          f"{r['member_add_apply_delta'] * 1e6:.0f} µs)")
    print(f"[{backend}] one policy's rules changed {ms(r['policy_change'])}, chains written "
          f"{r['policy_change_chains_written']}")
    print(f"[{backend}] read counters {ms(r['read_counters'])} ({r['counter_rules']} rules, iptables-save -c + ipset)"
          + (f"; through libiptc {ms(r['read_counters_libiptc'])}" if "read_counters_libiptc" in r else ""), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default="nft,legacy,python-iptables")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--loops", action="store_true", help="also measure asyncio vs uvloop subprocess cost")
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--inside", metavar="BACKEND", help=argparse.SUPPRESS)  # child: run one backend, print JSON
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("agent_bench: needs root (network namespaces)", file=sys.stderr)
        return 2
    state = build_state()
    if a.inside:
        print(json.dumps(asyncio.run(bench_backend(a.inside, state, a.repeat))))
        return 0
    c = count(state)
    print(f"state: {c['sets']} sets, {c['members']} members, {c['chains']} chains, {c['rules']} rules")
    ns = f"stkab-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for backend in a.backends.split(","):
            p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__),
                                "--inside", backend, "--repeat", str(a.repeat)],
                               capture_output=True, text=True, timeout=900)
            if p.returncode != 0:
                print(f"[{backend}] failed: {p.stderr.strip()[-2000:]}")
                continue
            report(backend, json.loads(p.stdout.strip().splitlines()[-1]), a.repeat)
        if not a.no_rss:
            print(f"agent RSS idle after applying the state (nft): {rss(ns)}")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    if a.loops:
        loops()
    return 0


if __name__ == "__main__":
    sys.exit(main())
