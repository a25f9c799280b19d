"""The apply loop against the in-memory kernel (no root needed)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from nodeagent.dataplane import Dataplane, cleanup
from nodeagent.fake_kernel import FakeKernel
from nodeagent.kernel import CmdResult
from stockade import member_set
from stockade.member_set import MemberSet
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
    digest,
)

from .conftest import FakeClock
from .states import policy_state
from .walker import Packet, allowed

MakeDp = Callable[..., Dataplane]


def restores(k: FakeKernel, since: int = 0) -> list[str]:
    return [a[0] for a in k.log[since:] if "restore" in a[0] or a[:2] == ("ipset", "restore")]


async def test_apply_then_reconcile_writes_nothing(make_dp: MakeDp, fake: FakeKernel) -> None:
    dp = make_dp()
    await dp.start()
    assert fake.writes == 0
    res = await dp.apply(policy_state())
    assert res.ok and res.writes == 2 and dp.applied_digest == digest(policy_state())
    w = fake.writes
    again = await dp.reconcile()
    assert again.ok and again.writes == 0 and fake.writes == w
    same = await dp.apply(policy_state())
    assert same.ok and same.writes == 0 and fake.writes == w


async def test_member_added_is_one_ipset_write(make_dp: MakeDp, fake: FakeKernel) -> None:
    dp = make_dp()
    await dp.start()
    await dp.apply(policy_state())
    n = len(fake.log)
    res = await dp.apply(policy_state(peers=frozenset({"198.18.0.3", "198.18.0.9"})))
    assert res.ok and res.writes == 1
    assert restores(fake, n) == ["ipset"]
    assert "198.18.0.9" in fake.sets["stkpeer"].members


async def test_policy_rules_changed_rewrites_only_its_chain(make_dp: MakeDp, fake: FakeKernel) -> None:
    dp = make_dp()
    await dp.start()
    await dp.apply(policy_state())
    fake.log.clear()
    orig = fake.run
    inputs: list[str] = []

    async def spy(argv: object, stdin: str | None = None, **kw: object) -> object:
        if stdin:
            inputs.append(stdin)
        return await orig(argv, stdin, **kw)  # type: ignore[arg-type]

    fake.run = spy  # type: ignore[method-assign,assignment]
    res = await dp.apply(policy_state(port=(9090, 9090)))
    assert res.ok and res.writes == 1
    assert len(inputs) == 1
    assert ":STOCKADE-POL-A - [0:0]" in inputs[0] and "STOCKADE-FORWARD" not in inputs[0]


def _with_second_policy(st: NodeState, moved: str) -> NodeState:
    """Add policy B (selects sel2, allows peer2 on port 53/udp)."""
    sets = dict(st.sets)
    sets["stksel2"] = IPSet("stksel2", "hash:ip", "inet", frozenset({moved}))
    sets["stkpeer2"] = IPSet("stkpeer2", "hash:ip", "inet", frozenset({"198.18.0.7"}))
    fwd = st.v4.chains["STOCKADE-FORWARD"]
    rules = (*fwd.rules[:2], Rule("JUMP", target="STOCKADE-POL-B", sets=(SetMatch("stksel2", ("dst",)),)),
             *fwd.rules[2:], Rule("DROP", sets=(SetMatch("stksel2", ("dst",)),), mark=(0x10000, 0x10000, True)))
    chains = dict(st.v4.chains)
    chains["STOCKADE-FORWARD"] = Chain("STOCKADE-FORWARD", rules)
    chains["STOCKADE-POL-B"] = Chain("STOCKADE-POL-B", (
        Rule("MARK", proto="udp", dport=(53, 53), sets=(SetMatch("stkpeer2", ("src",)),), set_mark=(0x10000, 0x10000)),))
    return NodeState(st.node, sets, FamilyState(chains, st.v4.hooks), st.v6)


PROBES = [Packet(s, d, pr, port) for s in ("198.18.0.3", "198.18.0.4", "198.18.0.5", "198.18.0.7")
          for d in ("198.18.0.2", "198.18.0.6") for pr, port in (("tcp", 8080), ("tcp", 80), ("udp", 53))]

TRANSITIONS = [
    pytest.param(policy_state(), policy_state(peers=frozenset({"198.18.0.4"}), port=(80, 80)),
                 id="peers-and-port-change-together"),
    pytest.param(policy_state(), policy_state(peers=frozenset({"198.18.0.3", "198.18.0.4"}), port=(80, 80)),
                 id="peer-added-while-port-narrows"),
    pytest.param(policy_state(selected=frozenset({"198.18.0.2", "198.18.0.6"})),
                 _with_second_policy(policy_state(selected=frozenset({"198.18.0.2"})), "198.18.0.6"),
                 id="pod-moves-to-another-policy"),
    pytest.param(policy_state(), policy_state(selected=frozenset({"198.18.0.2", "198.18.0.6"})),
                 id="pod-newly-selected"),
    pytest.param(_with_second_policy(policy_state(selected=frozenset({"198.18.0.2", "198.18.0.6"})), "198.18.0.5"),
                 _with_second_policy(policy_state(selected=frozenset({"198.18.0.2"})), "198.18.0.6"),
                 id="pod-moves-between-policies-members-only"),
    pytest.param(policy_state(peers=frozenset({"198.18.0.3"})),
                 policy_state(peers=frozenset({"198.18.0.4"})), id="peer-replaced"),
    pytest.param(policy_state(peers=frozenset({f"198.18.1.{i}" for i in range(1, 250)} | {"198.18.0.3"})),
                 policy_state(peers=frozenset({"198.18.0.4"}), port=(80, 80)),
                 id="big-set-shrinks-with-rule-change"),
]


@pytest.mark.parametrize(("old", "new"), TRANSITIONS)
async def test_no_intermediate_state_is_looser_than_both(make_dp: MakeDp, fake: FakeKernel, tmp_path: Path,
                                                         old: NodeState, new: NodeState) -> None:
    """After every step the kernel makes visible (each ipset line, each
    COMMIT), a packet is allowed only if the old or the new state allows it."""
    dp = make_dp(cut_conntrack=False)
    await dp.start()
    assert (await dp.apply(old)).ok
    before = {p: allowed(fake, p) for p in PROBES}
    ref = FakeKernel()
    ref_dp = make_dp(kernel=ref, state_dir=str(tmp_path / "ref"))
    await ref_dp.start()
    assert (await ref_dp.apply(new)).ok
    after = {p: allowed(ref, p) for p in PROBES}
    seen: list[dict[Packet, bool]] = []
    fake.observer = lambda: seen.append({p: allowed(fake, p) for p in PROBES})
    assert (await dp.apply(new)).ok
    assert seen[-1] == after
    for step, snap in enumerate(seen):
        looser = [p for p in PROBES if snap[p] and not (before[p] or after[p])]
        assert not looser, f"after step {step}: allowed by neither state: {looser}"


async def test_drift_repaired_and_counted(make_dp: MakeDp, fake: FakeKernel) -> None:
    dp = make_dp()
    await dp.start()
    await dp.apply(policy_state())
    fake.table().chains["STOCKADE-POL-A"].clear()  # a rule deleted by hand
    del fake.sets["stkpeer"].members["198.18.0.3"]  # a member deleted by hand
    fake.table().chains["FORWARD"].insert(0, "-j ACCEPT")  # someone else jumps the queue
    res = await dp.reconcile()
    assert res.ok and res.repairs > 0 and dp.status()["drift_repairs"] == res.repairs
    assert "198.18.0.3" in fake.sets["stkpeer"].members
    assert len(fake.table().chains["STOCKADE-POL-A"]) == 1
    assert fake.table().chains["FORWARD"][0].endswith("-j STOCKADE-FORWARD")
    assert fake.table().chains["FORWARD"][1] == "-j ACCEPT"
    assert (await dp.reconcile()).writes == 0


async def test_duplicated_hooks_are_removed(make_dp: MakeDp, fake: FakeKernel) -> None:
    dp = make_dp()
    await dp.start()
    await dp.apply(policy_state())
    fwd = fake.table().chains["FORWARD"]
    fwd.append(fwd[0])
    assert (await dp.reconcile()).repairs > 0
    assert sum(r.endswith("STOCKADE-FORWARD") for r in fake.table().chains["FORWARD"]) == 1


async def test_failed_apply_keeps_previous_state_and_retries(make_dp: MakeDp, fake: FakeKernel) -> None:
    clock = FakeClock()
    dp = make_dp(clock=clock, retry_min=0.5)
    await dp.start()
    first = policy_state()
    await dp.apply(first)
    fake.fail_next["iptables-nft-restore"] = "iptables-restore: line 3 failed"
    res = await dp.apply(policy_state(port=(81, 81)))
    assert not res.ok and "line 3 failed" in res.error
    assert res.failed_input.startswith("*filter") and "--dport 81" in res.failed_input
    assert dp.applied_digest == digest(first)
    assert "--dport 8080" in fake.table().chains["STOCKADE-POL-A"][0]
    task = asyncio.create_task(dp.run_periodic_reconcile())
    try:
        await clock.advance(0.1)
        assert dp.applied_digest == digest(first)
        await clock.advance(0.5)
        await asyncio.sleep(0.01)
        assert dp.applied_digest == digest(policy_state(port=(81, 81)))
        assert "--dport 81" in fake.table().chains["STOCKADE-POL-A"][0]
    finally:
        task.cancel()


@pytest.mark.parametrize("bad", [
    pytest.param(dataclasses.replace(policy_state(), sets={}), id="rule-names-unknown-set"),
    pytest.param(NodeState("n1", {"stkx": IPSet("stkx", "hash:ip", "inet", frozenset({"300.1.1.1"}))}),
                 id="invalid-member"),
    pytest.param(NodeState("n1", {"stkx": IPSet("stkx", "hash:ip", "inet4", frozenset())}),  # type: ignore[arg-type]
                 id="unknown-family"),
    pytest.param(NodeState("n1", {"other": IPSet("other", "hash:ip", "inet")}), id="foreign-set-name"),
    pytest.param(NodeState("n1", {"stkx": IPSet("stkx", "hash:ip", "inet", frozenset({"198.18.0.1\n198.18.0.2"}))}),
                 id="member-with-newline"),
    pytest.param(NodeState("n1", {"stkx": IPSet("stkx", "hash:ip", "inet", frozenset({"198.18.0.01"}))}),
                 id="member-not-canonical"),
])
async def test_garbage_rejected_last_good_kept(make_dp: MakeDp, fake: FakeKernel, bad: NodeState) -> None:
    dp = make_dp()
    await dp.start()
    await dp.apply(policy_state())
    w = fake.writes
    res = await dp.apply(bad)
    assert not res.ok and res.error.startswith("invalid state:")
    assert fake.writes == w and dp.applied_digest == digest(policy_state())
    assert (await dp.reconcile()).writes == 0


async def test_restart_adopts_without_write(make_dp: MakeDp, fake: FakeKernel) -> None:
    dp = make_dp()
    await dp.start()
    await dp.apply(policy_state())
    await dp.flush_persisted()
    w = fake.writes
    dp2 = make_dp()
    report = await dp2.start()
    assert dp2.applied_digest == digest(policy_state()), report
    assert (await dp2.apply(policy_state())).writes == 0
    assert fake.writes == w


async def test_restart_with_drifted_kernel_reports_unknown_and_writes_nothing(make_dp: MakeDp,
                                                                              fake: FakeKernel) -> None:
    dp = make_dp()
    await dp.start()
    await dp.apply(policy_state())
    del fake.sets["stkpeer"].members["198.18.0.3"]
    w = fake.writes
    dp2 = make_dp()
    await dp2.start()
    assert dp2.applied_digest == ""
    assert (await dp2.reconcile()).writes == 0  # nothing written before the first state
    assert fake.writes == w
    assert fake.table().chains["STOCKADE-POL-A"]  # the old rules stay in force
    res = await dp2.apply(policy_state())
    assert res.ok and res.writes == 1 and "198.18.0.3" in fake.sets["stkpeer"].members


async def test_corrupt_state_file_is_ignored(make_dp: MakeDp, fake: FakeKernel, tmp_path: object) -> None:
    dp = make_dp()
    await dp.start()
    await dp.apply(policy_state())
    await dp.flush_persisted()
    path = f"{tmp_path}/applied-state.json"
    d = json.load(open(path))
    d["sets"]["stkpeer"]["members"] = ["198.18.0.99"]
    json.dump(d, open(path, "w"))
    dp2 = make_dp()
    await dp2.start()
    assert dp2.applied_digest == ""


async def test_more_than_65536_members(make_dp: MakeDp, fake: FakeKernel) -> None:
    dp = make_dp()
    await dp.start()
    base = ipaddress.ip_address("198.18.0.0")
    peers = frozenset(str(base + i + 1) for i in range(70000))
    res = await dp.apply(policy_state(peers=peers))
    assert res.ok, res.error
    assert len(fake.sets["stkpeer"].members) == 70000 and fake.sets["stkpeer"].maxelem >= 140000
    more = frozenset(str(base + i + 1) for i in range(70000, 110000))
    res = await dp.apply(policy_state(peers=peers | more))  # grows past the headroom: resized by swap
    assert res.ok, res.error
    assert len(fake.sets["stkpeer"].members) == 110000


async def test_set_header_change_goes_through_shadow(make_dp: MakeDp, fake: FakeKernel) -> None:
    dp = make_dp()
    await dp.start()
    await dp.apply(policy_state())
    st = policy_state()
    sets = dict(st.sets)
    sets["stkpeer"] = IPSet("stkpeer", "hash:net", "inet", frozenset({"198.18.0.0/24"}))
    new = dataclasses.replace(st, sets=sets)
    res = await dp.apply(new)
    assert res.ok and res.plan["sets_switched"] == 1, res
    assert fake.sets["stkpeer"].type == "hash:net"
    assert [n for n in fake.sets if "~" in n] == []
    assert (await dp.reconcile()).writes == 0


async def test_removed_policy_removes_chain_and_sets(make_dp: MakeDp, fake: FakeKernel) -> None:
    dp = make_dp()
    await dp.start()
    await dp.apply(_with_second_policy(policy_state(), "198.18.0.6"))
    res = await dp.apply(policy_state())
    assert res.ok
    assert "STOCKADE-POL-B" not in fake.table().chains and "stksel2" not in fake.sets


async def test_ipv6_and_ipv4_together(make_dp: MakeDp, fake: FakeKernel) -> None:
    dp = make_dp()
    await dp.start()
    v4 = policy_state()
    v6 = policy_state(family="inet6", selected=frozenset({"2001:db8::2"}), peers=frozenset({"2001:db8::3"}),
                      sel_set="stksel6", peer_set="stkpeer6")
    both = NodeState("n1", {**v4.sets, **v6.sets}, v4.v4, v6.v6)
    res = await dp.apply(both)
    assert res.ok, res.error
    assert "STOCKADE-FORWARD" in fake.table("nft", "inet6").chains
    assert fake.sets["stkpeer6"].family == "inet6"
    summary = await cleanup(fake)
    assert summary["chains"] == 4 and summary["sets"] == 4 and not summary["errors"]


async def test_cleanup_leaves_others_alone(make_dp: MakeDp, fake: FakeKernel) -> None:
    dp = make_dp()
    await dp.start()
    await dp.apply(policy_state())
    await fake.run(["ipset", "restore"], "create kube-x hash:ip family inet\nadd kube-x 198.18.5.5\n")
    await fake.run(["iptables-nft-restore", "--noflush"],
                   "*filter\n:KUBE-FW - [0:0]\n-A KUBE-FW -j ACCEPT\n-I FORWARD 1 -j KUBE-FW\n"
                   "-A INPUT -m set --match-set kube-x src -j DROP\nCOMMIT\n")
    before_other = {c: list(r) for c, r in fake.table().chains.items() if not c.startswith("STOCKADE-")}
    summary = await cleanup(fake)
    assert summary["sets"] == 2 and summary["chains"] == 2 and summary["hooks"] == 1
    after = fake.table().chains
    assert not [c for c in after if c.startswith("STOCKADE-")]
    assert "kube-x" in fake.sets and not [n for n in fake.sets if n.startswith("stk")]
    before_other["FORWARD"] = [r for r in before_other["FORWARD"] if "STOCKADE" not in r]
    assert {c: list(r) for c, r in after.items()} == before_other


async def test_hooks_in_state_order(make_dp: MakeDp, fake: FakeKernel) -> None:
    st = policy_state(hooks=("FORWARD", "INPUT"))
    extra = Chain("STOCKADE-FIRST", (Rule("RETURN", proto="udp"),))
    fs = FamilyState({**st.v4.chains, extra.name: extra},
                     (Hook("FORWARD", "STOCKADE-FIRST", 1), Hook("FORWARD", "STOCKADE-FORWARD", 2),
                      Hook("INPUT", "STOCKADE-FORWARD", 1)))
    dp = make_dp()
    await dp.start()
    await fake.run(["iptables-nft-restore", "--noflush"], "*filter\n-A FORWARD -j ACCEPT\nCOMMIT\n")
    assert (await dp.apply(dataclasses.replace(st, v4=fs))).ok
    fwd = fake.table().chains["FORWARD"]
    assert fwd[0].endswith("-j STOCKADE-FIRST") and fwd[1].endswith("-j STOCKADE-FORWARD") and fwd[2] == "-j ACCEPT"
    assert fake.table().chains["INPUT"][0].endswith("-j STOCKADE-FORWARD")


async def test_tightening_cuts_conntrack(make_dp: MakeDp, fake: FakeKernel) -> None:
    dp = make_dp()
    await dp.start()
    await dp.apply(policy_state(peers=frozenset({"198.18.0.3", "198.18.0.4"})))
    fake.conntrack = [{"src": "198.18.0.4", "dst": "198.18.0.2", "proto": "tcp"},
                      {"src": "198.18.0.3", "dst": "198.18.0.2", "proto": "tcp"},
                      {"src": "198.18.0.8", "dst": "198.18.0.9", "proto": "tcp"}]
    res = await dp.apply(policy_state(peers=frozenset({"198.18.0.3"})))
    assert res.ok and res.conntrack_cuts > 0
    assert {e["src"] for e in fake.conntrack} == {"198.18.0.3", "198.18.0.8"}


async def test_status_and_counters(make_dp: MakeDp, fake: FakeKernel) -> None:
    st = policy_state()
    sets = dict(st.sets)
    sets["stksel"] = dataclasses.replace(sets["stksel"], counters=True)
    st = dataclasses.replace(st, sets=sets)
    dp = make_dp()
    await dp.start()
    await dp.apply(st)
    fake.sets["stksel"].members["198.18.0.2"] = (7, 700)
    line = "-A " + "STOCKADE-POL-A " + fake.table().chains["STOCKADE-POL-A"][0]
    fake.bump("nft", "inet", line, 5, 500)
    c = await dp.read_counters()
    assert c["sets"]["stksel"]["198.18.0.2"] == (7, 700)
    assert c["rules"]["inet"]["STOCKADE-POL-A"][0][1:] == (5, 500)
    s = dp.status()
    assert s["applied_digest"] == digest(st) and s["counts"]["rules"] == 4 and s["backend"] == "nft"


async def test_periodic_reconcile_repairs_after_period(make_dp: MakeDp, fake: FakeKernel) -> None:
    clock = FakeClock()
    dp = make_dp(clock=clock, reconcile_period=60.0, settle=1.0)
    await dp.start()
    await dp.apply(policy_state())
    task = asyncio.create_task(dp.run_periodic_reconcile())
    try:
        await clock.advance(1.0)  # the settle reconcile after the change
        await asyncio.sleep(0.01)
        n = dp.status()["reconciles"]
        assert n == 1
        fake.table().chains["STOCKADE-POL-A"].clear()
        await clock.advance(30)
        assert fake.table().chains["STOCKADE-POL-A"] == []
        await clock.advance(31)
        await asyncio.sleep(0.01)
        assert len(fake.table().chains["STOCKADE-POL-A"]) == 1
        assert dp.status()["drift_repairs"] > 0
    finally:
        task.cancel()


def _drop_set(st: NodeState, name: str) -> NodeState:
    return dataclasses.replace(st, sets={n: s for n, s in st.sets.items() if n != name})


def _bad_member(st: NodeState) -> NodeState:
    sets = dict(st.sets)
    sets["stkpeer"] = sets["stkpeer"].with_members(sets["stkpeer"].members | {"198.18.0.077"})
    return dataclasses.replace(st, sets=sets)


def _retype(st: NodeState) -> NodeState:
    sets = dict(st.sets)
    sets["stkpeer"] = IPSet("stkpeer", "hash:ip,port", "inet", frozenset({"198.18.0.3,tcp:80"}))
    return dataclasses.replace(st, sets=sets)


@pytest.mark.parametrize(("change", "needle"), [
    pytest.param(lambda st: _drop_set(st, "stkpeer"), "no set 'stkpeer'", id="set-removed-under-unchanged-chain"),
    pytest.param(_bad_member, "198.18.0.077", id="new-member-invalid"),
    pytest.param(_retype, "needs 2 direction", id="set-type-changed-under-unchanged-chain"),
])
async def test_incremental_validation_still_catches(make_dp: MakeDp, fake: FakeKernel,
                                                    change: Callable[[NodeState], NodeState], needle: str) -> None:
    dp = make_dp()
    await dp.start()
    st = policy_state()
    assert (await dp.apply(st)).ok
    res = await dp.apply(change(st))  # unchanged chains are the same objects: the skip path
    assert not res.ok and needle in res.error, res.error
    assert dp.applied_digest == digest(st)


def test_state_file_round_trip(tmp_path: object) -> None:
    from nodeagent import state_store

    st = policy_state(comment='a "quoted" / comment')
    enc = state_store.Encoder()
    state_store.save(str(tmp_path), st, encoder=enc)
    assert state_store.load(str(tmp_path)) == st
    st2 = policy_state(peers=frozenset({"198.18.0.9"}))  # reuses cached fragments of unchanged objects
    state_store.save(str(tmp_path), st2, encoder=enc)
    loaded = state_store.load(str(tmp_path))
    assert loaded == st2 and digest(loaded) == digest(st2)


async def test_host_without_ipv6_still_works(make_dp: MakeDp, fake: FakeKernel) -> None:
    orig = fake.run

    async def no_v6(argv: Sequence[str], stdin: str | None = None, *, timeout: float = 30.0) -> CmdResult:
        if argv[0].startswith("ip6tables"):
            return CmdResult(tuple(argv), 1, "", "ip6tables: Address family not supported by protocol")
        return await orig(argv, stdin, timeout=timeout)

    fake.run = no_v6  # type: ignore[method-assign]
    dp = make_dp()
    await dp.start()
    assert (await dp.apply(policy_state())).ok
    assert (await dp.reconcile()).writes == 0


async def test_states_from_apply_delta_write_what_frozensets_write(make_dp: MakeDp, tmp_path: Path) -> None:
    """The agent's states come from apply_delta (MemberSet members sharing a
    base with the previous version): every round writes exactly what the
    same states with plain frozenset members write, the kernel ends up
    holding the state, and a reconcile finds nothing to do.  Rule changes
    and moves between sets mixed in (atomic switch, conntrack cuts); the
    compaction limit small so compactions happen mid-run."""
    rnd = random.Random(7)
    pool = [f"198.18.{i // 200}.{i % 200 + 1}" for i in range(400)]
    start = policy_state(peers=frozenset(pool[:120]), selected=frozenset(pool[300:310]))
    runs: list[list[tuple[str, ...]]] = [[], []]
    kernels = [FakeKernel(), FakeKernel()]
    for k, log in zip(kernels, runs, strict=True):
        orig = k.run

        async def run(argv: Sequence[str], stdin: str | None = None, *, timeout: float = 30.0,
                      orig: Callable[..., Any] = orig, log: list[tuple[str, ...]] = log) -> CmdResult:
            log.append((*argv, stdin or ""))
            return await orig(argv, stdin, timeout=timeout)  # type: ignore[no-any-return]
        k.run = run  # type: ignore[method-assign]
    dps = [make_dp(kernel=k, state_dir=str(tmp_path / str(i))) for i, k in enumerate(kernels)]
    for dp in dps:
        await dp.start()
    state = start
    with mock.patch.object(member_set, "overlay_limit", lambda n, tag=0: 4):
        for step in range(40):
            peers, sel = state.sets["stkpeer"], state.sets["stksel"]
            out = frozenset(rnd.sample(sorted(peers.members), rnd.randint(0, 2)))
            into = frozenset(rnd.sample([p for p in pool[:300] if p not in peers.members], rnd.randint(0, 3)))
            moved = frozenset(rnd.sample(sorted(sel.members), 1)) if step % 5 == 4 else frozenset[str]()
            chains = ((("inet", dataclasses.replace(state.v4.chains["STOCKADE-POL-A"], rules=(
                dataclasses.replace(state.v4.chains["STOCKADE-POL-A"].rules[0], dport=(9000 + step, 9000 + step)),))),)
                if step % 7 == 3 else ())
            delta = NodeDelta("n1", set_members=(SetMembersDelta("stkpeer", into | moved, out),
                                                  SetMembersDelta("stksel", frozenset(), moved)),
                              chains_upserted=chains)  # type: ignore[arg-type]
            state = apply_delta(state, delta)
            plain = dataclasses.replace(state, sets={n: s.with_members(frozenset(s.members), frozenset(s.nomatch))
                                                     for n, s in state.sets.items()})
            got = [await dp.apply(st) for dp, st in zip(dps, (state, plain), strict=True)]
            assert all(r.ok for r in got) and got[0].digest == got[1].digest == digest(plain)
            assert runs[0] == runs[1], f"step {step}"
            assert set(kernels[0].sets["stkpeer"].members) == set(state.sets["stkpeer"].members)
            assert set(kernels[0].sets["stksel"].members) == set(state.sets["stksel"].members)
    assert any(isinstance(s.members, MemberSet) for s in state.sets.values())
    assert any("restore" in " ".join(a) and "198.18." in a[-1] for a in runs[0])
    for dp in dps:
        assert (await dp.reconcile()).writes == 0
