"""The desired-state contract: diff/apply round trips, digests, validation."""

from __future__ import annotations

import dataclasses
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    StateError,
    apply_delta,
    diff,
    digest,
    render_rule,
)
from stockade.state_validation import validate
from stockade.wire.digest import Carried, DigestCache


def _state(members: frozenset[str], rules: tuple[Rule, ...]) -> NodeState:
    s = IPSet("stk-a", "hash:ip", "inet", members)
    n = IPSet("stk-n", "hash:net", "inet", frozenset({"198.18.0.0/16"}), frozenset({"198.18.1.0/24"}))
    chains = {"STOCKADE-FORWARD": Chain("STOCKADE-FORWARD", rules)}
    return NodeState("n0", {"stk-a": s, "stk-n": n},
                     FamilyState(chains, (Hook("FORWARD", "STOCKADE-FORWARD"),)))


R1 = Rule("DROP", sets=(SetMatch("stk-a", ("dst",)),))
R2 = Rule("RETURN", proto="tcp", dport=(80, 80), sets=(SetMatch("stk-n", ("src",)),))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(_state(frozenset(), ()), _state(frozenset({"198.18.0.1"}), (R1,)), id="add"),
        pytest.param(_state(frozenset({"198.18.0.1"}), (R1, R2)), _state(frozenset(), (R2,)), id="remove"),
        pytest.param(_state(frozenset({"198.18.0.1"}), (R1,)), _state(frozenset({"198.18.0.1"}), (R1,)), id="same"),
        pytest.param(NodeState("n0"), _state(frozenset({"198.18.0.2"}), (R2, R1)), id="from-empty"),
        pytest.param(_state(frozenset({"198.18.0.2"}), (R2, R1)), NodeState("n0"), id="to-empty"),
    ],
)
def test_diff_then_apply_gives_new(old: NodeState, new: NodeState) -> None:
    d = diff(old, new)
    got = apply_delta(old, d)
    assert digest(got) == digest(new)
    assert d.is_empty() == (digest(old) == digest(new))


def test_member_change_is_a_member_delta_not_a_set_replacement() -> None:
    d = diff(_state(frozenset({"198.18.0.1"}), (R1,)), _state(frozenset({"198.18.0.2"}), (R1,)))
    assert d.sets_upserted == () and d.chains_upserted == ()
    assert [(m.name, m.added, m.removed) for m in d.set_members] == [
        ("stk-a", frozenset({"198.18.0.2"}), frozenset({"198.18.0.1"}))]


def test_digest_ignores_construction_order() -> None:
    a = _state(frozenset({"198.18.0.1", "198.18.0.2"}), (R1,))
    b = _state(frozenset({"198.18.0.2", "198.18.0.1"}), (R1,))
    assert digest(a) == digest(b)
    assert digest(a) != digest(_state(frozenset({"198.18.0.1"}), (R1,)))


@pytest.mark.parametrize(
    ("state", "message"),
    [
        pytest.param(_state(frozenset({"198.18.0.1/32"}), ()), "stk-a", id="non-canonical-member"),
        pytest.param(_state(frozenset({"2001:db8::1"}), ()), "stk-a", id="wrong-family"),
        pytest.param(_state(frozenset(), (Rule("DROP", sets=(SetMatch("stk-x", ("dst",)),)),)), "no set 'stk-x'",
                     id="unknown-set"),
        pytest.param(_state(frozenset(), (Rule("JUMP", target="STOCKADE-NOPE"),)), "no chain", id="unknown-chain"),
        pytest.param(_state(frozenset(), (Rule("DROP", dport=(80, 80)),)), "needs a protocol", id="port-no-proto"),
    ],
)
def test_validate_names_what_is_wrong(state: NodeState, message: str) -> None:
    with pytest.raises(StateError, match=message):
        validate(state)


def _with_rule(rule: Rule) -> NodeState:
    return _state(frozenset(), (rule,))


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        pytest.param(Rule("DROP", comment="a\nb"), r"rules\[0\]\.comment: .*printable ASCII", id="newline-comment"),
        pytest.param(Rule("DROP", comment="caf\u00e9"), r"\.comment: .*printable ASCII", id="non-ascii-comment"),
        pytest.param(Rule("DROP", comment="c" * 256), r"\.comment: .*longer than the kernel's 255", id="comment-256"),
        pytest.param(Rule("NFLOG", nflog_prefix="p" * 64), r"\.nflog_prefix: .*63", id="nflog-prefix-64"),
        pytest.param(Rule("NFLOG", nflog_group=65536), r"\.nflog_group: 65536", id="nflog-group-u16"),
        pytest.param(Rule("NFLOG", nflog_group=-1), r"\.nflog_group: -1", id="nflog-group-negative"),
        pytest.param(Rule("DROP", in_iface="i" * 16), r"\.in_iface: .*15", id="iface-16"),
        pytest.param(Rule("DROP", out_iface="a b"), r"\.out_iface: .*not an interface name", id="iface-blank"),
        pytest.param(Rule("DROP", out_iface="a/b"), r"\.out_iface: .*not an interface name", id="iface-slash"),
        pytest.param(Rule("DROP", ctstate=("NEW", "BOGUS")), r"\.ctstate\[1\]: unknown conntrack state 'BOGUS'",
                     id="ctstate-unknown"),
        pytest.param(Rule("DROP", ctstate=("new",)), r"\.ctstate\[0\]", id="ctstate-lower-case"),
        pytest.param(Rule("DROP", ctstate=("NEW", "NEW")), r"\.ctstate: .*twice", id="ctstate-twice"),
        pytest.param(Rule("DROP", limit="10"), r"\.limit: '10' is not a rate", id="limit-no-unit"),
        pytest.param(Rule("DROP", limit="10/seconds"), r"\.limit: .*not a rate", id="limit-bad-unit"),
        pytest.param(Rule("DROP", limit="0/second"), r"\.limit: .*not a rate", id="limit-zero"),
        pytest.param(Rule("DROP", limit="20000/second"), r"\.limit: .*faster", id="limit-too-fast"),
    ],
)
def test_validate_refuses_rule_values_the_kernel_refuses(rule: Rule, message: str) -> None:
    with pytest.raises(StateError, match=message):
        validate(_with_rule(rule))


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param(Rule("DROP", comment="default/allow-web ingress[0]"), id="policy-comment"),
        pytest.param(Rule("DROP", comment="a'b\\c \"d\" ~!"), id="quotes-in-comment"),
        pytest.param(Rule("DROP", comment="c" * 255), id="comment-255"),
        pytest.param(Rule("NFLOG", nflog_group=65535, nflog_prefix="stockade-drop-ingress", limit="10/second"),
                     id="nflog"),
        pytest.param(Rule("NFLOG", nflog_prefix="p" * 63, limit="1/d"), id="nflog-prefix-63"),
        pytest.param(Rule("DROP", limit="10000/s"), id="limit-10000-per-second"),
        pytest.param(Rule("DROP", limit="5/min"), id="limit-min"),
        pytest.param(Rule("DROP", limit="2/hour"), id="limit-hour"),
        pytest.param(Rule("DROP", in_iface="veth+", out_iface="i" * 15), id="ifaces"),
        pytest.param(Rule("DROP", ctstate=("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")),
                     id="all-ctstates"),
    ],
)
def test_validate_accepts_what_the_kernel_takes(rule: Rule) -> None:
    validate(_with_rule(rule))


@pytest.mark.parametrize("name", ["stk-z z", "stk-a\n", "stk-\u00e9", "stk-a\"b", "stk-a/b"])
def test_validate_refuses_set_names_outside_the_name_alphabet(name: str) -> None:
    state = NodeState("n0", {name: IPSet(name, "hash:ip", "inet")})
    with pytest.raises(StateError, match=r"\.name: only letters, digits and _ \. : - are allowed"):
        validate(state)


def test_validate_refuses_a_chain_name_outside_the_name_alphabet() -> None:
    state = NodeState("n0", v4=FamilyState({"STOCKADE-A B": Chain("STOCKADE-A B", ())}))
    with pytest.raises(StateError, match=r"chains\['STOCKADE-A B'\]\.name: only letters"):
        validate(state)


def test_validate_refuses_hook_position_0() -> None:
    s = _state(frozenset(), ())
    bad = NodeState(s.node, s.sets, FamilyState(s.v4.chains, (Hook("FORWARD", "STOCKADE-FORWARD", 0),)))
    with pytest.raises(StateError, match=r"inet\.hooks\[0\]\.position: 0"):
        validate(bad)


def test_validate_cuts_a_huge_name_in_its_message() -> None:
    name = "stk-" + "y" * 100_000
    with pytest.raises(StateError) as e:
        validate(NodeState("n0", {name: IPSet(name, "hash:ip", "inet")}))
    assert len(str(e.value)) < 300 and "(100004 chars)" in str(e.value)


def test_apply_delta_rejects_member_change_of_missing_set() -> None:
    d = diff(_state(frozenset({"198.18.0.1"}), ()), _state(frozenset({"198.18.0.2"}), ()))
    with pytest.raises(StateError, match="no set"):
        apply_delta(NodeState("n0"), d)


def test_render_rule_spelling() -> None:
    assert render_rule(R2) == ["-p", "tcp", "-m", "tcp", "--dport", "80", "-m", "set", "--match-set", "stk-n", "src",
                               "-j", "RETURN"]


# --------------------------------------------------------------------------
# apply_delta's MemberSets against the frozenset path

_IPS = [f"198.18.0.{i}" for i in range(1, 30)]
_NETS = [f"198.18.{i}.0/24" for i in range(1, 12)]
_ip_sets = st.frozensets(st.sampled_from(_IPS), max_size=10)
_net_sets = st.frozensets(st.sampled_from(_NETS), max_size=5)
# one step: per set (stk-a hash:ip, stk-n hash:net) added, removed, nomatch added, nomatch removed
_step = st.tuples(st.tuples(_ip_sets, _ip_sets), st.tuples(_net_sets, _net_sets, _net_sets, _net_sets))


def _frozen_state(state: NodeState) -> NodeState:
    """``state`` with every set's members as plain frozensets."""
    return dataclasses.replace(state, sets={n: s.with_members(frozenset(s.members), frozenset(s.nomatch))
                                            for n, s in state.sets.items()})


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=10), limit=st.integers(0, 4))
def test_apply_delta_member_sets_equal_the_frozenset_path(
        steps: list[tuple[tuple[frozenset[str], frozenset[str]], tuple[frozenset[str], ...]]], limit: int) -> None:
    """Equal states, set hashes, digests (state.digest, Carried carried
    through each delta, DigestCache) and diffs, at every step; the limit
    drawn small so compactions happen mid-sequence."""
    state = _state(frozenset(_IPS[:6]), (R1, R2))
    ref = state
    carried = Carried.of(state)
    cache = DigestCache()
    saw_member_set = changes = False
    with mock.patch.object(member_set, "overlay_limit", lambda n, tag=0: limit):
        for (a_add, a_rem), (n_add, n_rem, nm_add, nm_rem) in steps:
            # as the controller sends them: only absent members added, present ones removed
            a, n = ref.sets["stk-a"], ref.sets["stk-n"]
            delta = NodeDelta("n0", set_members=(
                SetMembersDelta("stk-a", a_add - a.members, (a_rem & a.members) - a_add),
                SetMembersDelta("stk-n", n_add - n.members, (n_rem & n.members) - n_add,
                                nm_add - n.nomatch, (nm_rem & n.nomatch) - nm_add)))
            new = apply_delta(state, delta)
            ref_sets = dict(ref.sets)
            for md in delta.set_members:
                s = ref_sets[md.name]
                ref_sets[md.name] = s.with_members((frozenset(s.members) - md.removed) | md.added,
                                                   (frozenset(s.nomatch) - md.nomatch_removed) | md.nomatch_added)
            new_ref = dataclasses.replace(ref, sets=ref_sets)
            saw_member_set |= any(isinstance(s.members, MemberSet) or isinstance(s.nomatch, MemberSet)
                                  for s in new.sets.values())
            changes |= any(md.size() for md in delta.set_members)
            assert new == new_ref and new_ref == new
            for name, s in new.sets.items():
                r = new_ref.sets[name]
                assert s == r and hash(s) == hash(r) and hash(s.members) == hash(r.members)
                assert sorted(s.members) == sorted(r.members) and sorted(s.nomatch) == sorted(r.nomatch)
            want = digest(_frozen_state(new_ref))
            assert digest(new) == want
            carried = carried.after(state, delta, new)
            assert carried.digest == want == Carried.of(new).digest
            assert cache.digest(new, evict=False) == want
            assert diff(state, new) == diff(ref, new_ref) and diff(new, state) == diff(new_ref, ref)
            assert diff(new_ref, new).is_empty() and diff(new, new_ref).is_empty()
            state, ref = new, new_ref
    assert saw_member_set or not changes
