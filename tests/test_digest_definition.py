"""The digest's definition is pinned: controller replicas of different
versions (a rolling upgrade) and agents that persisted a digest compare
it across versions, and a changed definition costs every agent one
snapshot.  So a change to it must be deliberate: update the value here
and say so in the change (the commit and the upgrade notes)."""

from __future__ import annotations

from stockade.state import Chain, FamilyState, Hook, IPSet, NodeState, Rule, SetMatch, digest, member_sum
from stockade.wire.digest import Carried, DigestCache

PINNED = "e48bc72e4be863a676d41afb46baf938bb085da587b223d5a0307fe9ca58f139"


def _state() -> NodeState:
    a = IPSet("stk-a", "hash:ip", "inet", frozenset({"198.18.0.1", "198.18.0.2"}))
    n = IPSet("stk-n", "hash:net", "inet", frozenset({"198.18.0.0/16"}), frozenset({"198.18.1.0/24"}))
    rules = (Rule("DROP", sets=(SetMatch("stk-a", ("dst",)),)),
             Rule("RETURN", proto="tcp", dport=(80, 80), sets=(SetMatch("stk-n", ("src",)),)))
    return NodeState("n0", {"stk-a": a, "stk-n": n},
                     FamilyState({"STOCKADE-FORWARD": Chain("STOCKADE-FORWARD", rules)},
                                 (Hook("FORWARD", "STOCKADE-FORWARD"),)))


def test_the_digest_of_a_fixed_state_is_the_pinned_value() -> None:
    st = _state()
    assert digest(st) == PINNED
    assert DigestCache().digest(st) == PINNED and Carried.of(st).digest == PINNED


def test_member_sum_is_order_free_and_moves_by_the_changed_members_only() -> None:
    a, b, c = "198.18.0.1", "198.18.0.2", "198.18.0.3"
    assert member_sum([a, b]) == member_sum([b, a]) != member_sum([a, c])
    assert (member_sum([a, b]) - member_sum([b]) + member_sum([c])) % (1 << 128) == member_sum([a, c])
    assert member_sum([]) == 0
