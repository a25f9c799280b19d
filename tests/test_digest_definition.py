"""The digest's definition is pinned: controller replicas of different
versions (a rolling upgrade) and agents that persisted a digest compare
it across versions, and a changed definition costs every agent one
snapshot.  So a change to it must be deliberate: update the value here
and say so in the change (the commit and the upgrade notes)."""

from __future__ import annotations

import pytest

from stockade.state import Chain, FamilyState, Hook, IPSet, NodeState, Rule, SetMatch, digest, member_sum
from stockade.wire import codec
from stockade.wire import digest as digest_mod
from stockade.wire.digest import Carried, DigestCache
from stockade.wire.messages import Snapshot

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


def test_cached_rule_texts_give_the_same_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller's DigestCache keeps rule texts by identity (one rule
    object serves many nodes' chains): the same digests as the uncached
    path (one json.dumps per chain), also when the cache fills up and is
    cleared."""
    monkeypatch.setattr(digest_mod, "RULES_KEPT", 3)
    shared = Rule("DROP", sets=(SetMatch("stk-a", ("dst",)),), comment="shared")
    cache = DigestCache(cache_rules=True)
    for i in range(6):
        rules = (shared, *(Rule("RETURN", proto="tcp", dport=(80 + i + k, 80 + i + k)) for k in range(3)))
        st = NodeState(f"n{i}", _state().sets, FamilyState(
            {"STOCKADE-FORWARD": Chain("STOCKADE-FORWARD", rules), "STOCKADE-X": Chain("STOCKADE-X", rules[::-1])},
            (Hook("FORWARD", "STOCKADE-FORWARD"),)))
        assert cache.digest(st, evict=False) == digest(st)


def test_cached_rule_bytes_encode_what_the_rules_say(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec._RULE_BYTES, "limit", 2)
    codec._RULE_BYTES.clear()
    shared = Rule("JUMP", target="STOCKADE-X", proto="udp", dport=(53, 53))
    for i in range(5):
        rules = (shared, Rule("RETURN", comment=f"r{i}"), Rule("DROP", proto="tcp", dport=(i + 1, i + 1)))
        st = NodeState("n0", {}, FamilyState({"STOCKADE-X": Chain("STOCKADE-X", rules[1:]),
                                              "STOCKADE-Y": Chain("STOCKADE-Y", rules)}, ()))
        (snap,) = codec.decode_all(codec.encode_snapshot(st, 1, digest(st), inline=True))
        assert isinstance(snap, Snapshot) and snap.state == st
