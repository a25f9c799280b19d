"""The desired-state contract: diff/apply round trips, digests, validation."""

from __future__ import annotations

import pytest

from stockade.state import (
    Chain,
    FamilyState,
    Hook,
    IPSet,
    NodeState,
    Rule,
    SetMatch,
    StateError,
    apply_delta,
    diff,
    digest,
    render_rule,
    validate,
)


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


def test_apply_delta_rejects_member_change_of_missing_set() -> None:
    d = diff(_state(frozenset({"198.18.0.1"}), ()), _state(frozenset({"198.18.0.2"}), ()))
    with pytest.raises(StateError, match="no set"):
        apply_delta(NodeState("n0"), d)


def test_render_rule_spelling() -> None:
    assert render_rule(R2) == ["-p", "tcp", "-m", "tcp", "--dport", "80", "-m", "set", "--match-set", "stk-n", "src",
                               "-j", "RETURN"]
