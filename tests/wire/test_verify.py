"""The agent's fast validation gives the same verdict as stockade.state_validation.validate."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.state import IPSet, NodeState, StateError, apply_delta, diff
from stockade.state_validation import validate
from stockade.wire.verify import validate_after_delta, validate_state
from tests.wire.helpers import make_state


def with_set(s: IPSet) -> NodeState:
    base = make_state()
    return NodeState(base.node, {**base.sets, s.name: s}, base.v4, base.v6)


CASES = [
    pytest.param("hash:ip", "inet", "10.0.0.1", True, id="ip"),
    pytest.param("hash:ip", "inet", "255.255.255.255", True, id="ip-max"),
    pytest.param("hash:ip", "inet", "0.0.0.0", True, id="ip-zero"),
    pytest.param("hash:ip", "inet", "10.0.0.01", False, id="ip-leading-zero"),
    pytest.param("hash:ip", "inet", "256.0.0.1", False, id="ip-octet-too-big"),
    pytest.param("hash:ip", "inet", "10.0.0", False, id="ip-short"),
    pytest.param("hash:ip", "inet", " 10.0.0.1", False, id="ip-space"),
    pytest.param("hash:ip", "inet", "fd00::1", False, id="ip-v6-in-v4-set"),
    pytest.param("hash:ip", "inet6", "fd00::1", True, id="ip6"),
    pytest.param("hash:ip", "inet6", "FD00::1", False, id="ip6-not-canonical"),
    pytest.param("hash:ip,port", "inet", "10.0.0.1,tcp:80", True, id="ipport"),
    pytest.param("hash:ip,port", "inet", "10.0.0.1,sctp:65535", True, id="ipport-max"),
    pytest.param("hash:ip,port", "inet", "10.0.0.1,tcp:65536", False, id="ipport-too-big"),
    pytest.param("hash:ip,port", "inet", "10.0.0.1,tcp:0", False, id="ipport-zero"),
    pytest.param("hash:ip,port", "inet", "10.0.0.1,tcp:080", False, id="ipport-leading-zero"),
    pytest.param("hash:ip,port", "inet", "10.0.0.1,icmp:8", False, id="ipport-proto"),
    pytest.param("hash:net", "inet", "10.0.0.0/8", True, id="net"),
    pytest.param("hash:net", "inet", "10.0.0.1/8", False, id="net-host-bits"),
    pytest.param("hash:net", "inet", "10.0.0.1", True, id="net-host"),
    pytest.param("hash:net", "inet", "10.0.0.1/32", False, id="net-host-with-prefix"),
]


@pytest.mark.parametrize("typ, fam, member, ok", CASES)
def test_same_verdict_as_validate(typ: str, fam: str, member: str, ok: bool) -> None:
    state = with_set(IPSet("stk-t", typ, fam, frozenset({member})))  # type: ignore[arg-type]
    errors = []
    for check in (validate, validate_state):
        try:
            check(state)
            errors.append("")
        except StateError as e:
            errors.append(str(e))
    assert errors[0] == errors[1]
    assert (errors[0] == "") == ok


def test_structure_errors_are_the_contracts() -> None:
    s = make_state()
    bad = NodeState(s.node, {**s.sets, "stk-n": IPSet("stk-n", "hash:ip", "inet", frozenset(), frozenset({"10.0.0.1"}))},
                    s.v4, s.v6)
    with pytest.raises(StateError, match="only hash:net sets take nomatch"):
        validate_state(bad)
    bad = NodeState(s.node, {"xx-wrong": IPSet("xx-wrong", "hash:ip", "inet")})
    with pytest.raises(StateError, match="must start with"):
        validate_state(bad)


def test_delta_checks_only_what_it_adds() -> None:
    old = make_state(pods=3)
    new = make_state(pods=9)
    d = diff(old, new)
    validate_after_delta(apply_delta(old, d), d)
    bad_new = NodeState(new.node, {**new.sets, "stk-pods": new.sets["stk-pods"].with_members(
        new.sets["stk-pods"].members | {"999.0.0.1"})}, new.v4, new.v6)
    bd = diff(old, bad_new)
    with pytest.raises(StateError, match=r"999\.0\.0\.1"):
        validate_after_delta(apply_delta(old, bd), bd)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789.,:tcpudsx/ ", max_size=22),
       st.sampled_from(["hash:ip", "hash:ip,port", "hash:net"]))
def test_random_members_same_verdict(member: str, typ: str) -> None:
    state = NodeState("n1", {"stk-t": IPSet("stk-t", typ, "inet", frozenset({member}))})  # type: ignore[arg-type]
    verdicts = []
    for check in (validate, validate_state):
        try:
            check(state)
            verdicts.append(True)
        except StateError:
            verdicts.append(False)
    assert verdicts[0] == verdicts[1]


@pytest.mark.parametrize("typ, member, nomatch, why", [
    pytest.param("hash:ip", "10.0.0.999", False, "not a valid hash:ip", id="bad-added-member"),
    pytest.param("hash:ip", "10.0.0.7", True, "only hash:net sets take nomatch", id="nomatch-on-hash-ip"),
])
def test_members_only_delta_still_checks_what_it_adds(typ: str, member: str, nomatch: bool, why: str) -> None:
    from stockade.state import NodeDelta, SetMembersDelta

    old = make_state()
    md = SetMembersDelta("stk-pods", nomatch_added=frozenset({member})) if nomatch else \
        SetMembersDelta("stk-pods", added=frozenset({member}))
    d = NodeDelta("n1", set_members=(md,))
    with pytest.raises(StateError, match=why):
        validate_after_delta(apply_delta(old, d), d)
