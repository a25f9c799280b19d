"""stockade.member_set: a MemberSet behaves as the frozenset of its content.

Property tests run random sequences of member deltas (including deltas
that add present members, remove absent ones, or name a member on both
sides) through ``changed`` and through plain frozensets, with the
compaction limit drawn too (0 compacts on every change), and compare every
operation the code uses between all pairs of versions, both ways round,
each side a MemberSet or a frozenset."""

from __future__ import annotations

import copy
import itertools
import json
import operator
import pickle
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade import member_set
from stockade.member_set import Members, MemberSet, changed, frozen, overlay_limit

UNIVERSE = [f"10.0.0.{i}" for i in range(24)]
members_st = st.frozensets(st.sampled_from(UNIVERSE), max_size=12)
delta_st = st.tuples(members_st, members_st)  # (added, removed)


def run(start: frozenset[str], deltas: list[tuple[frozenset[str], frozenset[str]]]) -> list[tuple[Members, frozenset[str]]]:
    """Every version: (what changed() made, the frozenset it must equal)."""
    cur: Members = start
    ref = start
    out: list[tuple[Members, frozenset[str]]] = [(cur, ref)]
    for added, removed in deltas:
        cur = changed(cur, added, removed)
        ref = (ref - removed) | added
        out.append((cur, ref))
    return out


def check_alone(m: Members, ref: frozenset[str]) -> None:
    assert len(m) == len(ref)
    assert set(m) == ref and len(list(m)) == len(ref)  # iteration yields each member once
    assert sorted(m) == sorted(ref)
    assert all((x in m) == (x in ref) for x in UNIVERSE)
    assert m == ref and ref == m and not (m != ref) and not (ref != m)
    assert hash(m) == hash(ref)
    assert bool(m) == bool(ref)
    assert frozen(m) == ref and type(frozen(m)) is frozenset


BINARY: list[Callable[[Any, Any], Any]] = [operator.sub, operator.or_, operator.and_, operator.xor, operator.eq,
                                           operator.ne, operator.le, operator.lt, operator.ge, operator.gt]


def check_pair(x: Members, xr: frozenset[str], y: Members, yr: frozenset[str]) -> None:
    for op in BINARY:
        want = op(xr, yr)
        for a, b in ((x, y), (x, yr), (xr, y)):
            got = op(a, b)
            assert got == want, (op, a, b, got, want)
            if isinstance(want, frozenset):
                assert type(got) is frozenset, (op, type(got))
    assert x.isdisjoint(yr) == xr.isdisjoint(yr) and y.isdisjoint(xr) == yr.isdisjoint(xr)
    assert x.isdisjoint(y) == xr.isdisjoint(yr)
    assert (x == y) == (hash(x) == hash(y) and xr == yr)


@settings(max_examples=300, deadline=None)
@given(start=members_st, deltas=st.lists(delta_st, max_size=12), limit=st.integers(0, 6))
def test_versions_behave_as_frozensets(start: frozenset[str], deltas: list[tuple[frozenset[str], frozenset[str]]],
                                       limit: int) -> None:
    with mock.patch.object(member_set, "overlay_limit", lambda n, tag=0: limit):
        versions = run(start, deltas)
    for m, ref in versions:
        check_alone(m, ref)
    for (x, xr), (y, yr) in itertools.product(versions, repeat=2):
        check_pair(x, xr, y, yr)


@settings(max_examples=100, deadline=None)
@given(start=members_st, deltas=st.lists(delta_st, min_size=1, max_size=30))
def test_default_limit_and_interleaved_sets(start: frozenset[str],
                                            deltas: list[tuple[frozenset[str], frozenset[str]]]) -> None:
    """The real limit; two independent histories from one start compared with each other."""
    a = run(start, deltas)
    b = run(start, list(reversed(deltas)))
    for (x, xr), (y, yr) in zip(a, b, strict=True):
        check_alone(x, xr)
        check_pair(x, xr, y, yr)


def test_changes_share_the_base_and_diff_from_overlays() -> None:
    """One-member changes keep the base; each version is one overlay step
    from the one before it, also across a compaction (so the agent's plan
    diffs never walk the set)."""
    base = frozenset(f"10.1.{i // 256}.{i % 256}" for i in range(1000))
    versions: list[Members] = [base]
    compactions = 0
    for i in range(600):
        added, removed = (frozenset({f"10.2.0.{i % 250}"}), frozenset[str]()) if i % 2 == 0 else \
            (frozenset[str](), frozenset({f"10.1.{i // 256}.{i % 256}"}))
        new = changed(versions[-1], added, removed)
        assert isinstance(new, MemberSet)
        old = versions[-1]
        assert new._pair(old) is not None
        assert not isinstance(old, MemberSet) or old._pair(new) is not None
        if new._base is not (old._base if isinstance(old, MemberSet) else old):
            compactions += 1
            assert new._prev is not None and len(new._add) + len(new._rem) == 0
        assert new - old == added - old and old - new == removed & old
        versions.append(new)
    limit = overlay_limit(len(base), versions[1]._tag)  # type: ignore[union-attr]
    assert compactions >= 1 and limit < 600


def test_no_change_keeps_identity() -> None:
    base = frozenset(UNIVERSE[:5])
    assert changed(base, frozenset(), frozenset()) is base
    assert changed(base, frozenset(UNIVERSE[:2]), frozenset(UNIVERSE[10:12])) is base
    m = changed(base, frozenset({UNIVERSE[20]}), frozenset())
    assert changed(m, frozenset({UNIVERSE[20]}), frozenset({UNIVERSE[21]})) is m
    back = changed(m, frozenset(), frozenset({UNIVERSE[20]}))
    assert back is base  # overlays empty again: the base itself


def test_overlay_limit_grows_as_a_root_and_spreads_by_tag() -> None:
    assert overlay_limit(0) >= member_set.MIN_OVERLAY // 2
    assert overlay_limit(30_000, 1) < 30_000 // 20 and overlay_limit(1_000_000, 1) < 10_000
    spread = {overlay_limit(30_000, t) for t in range(1, 50)}
    assert len(spread) > 10 and min(spread) >= 2 * 692 // 4 and max(spread) <= 3 * 692 // 2


@pytest.mark.parametrize("via", [
    pytest.param(lambda m: pickle.loads(pickle.dumps(m)), id="pickle"),
    pytest.param(copy.copy, id="copy"),
    pytest.param(copy.deepcopy, id="deepcopy"),
    pytest.param(lambda m: frozenset(json.loads(json.dumps(sorted(m)))), id="json-sorted"),
])
def test_round_trips(via: Callable[[Members], Members]) -> None:
    m = changed(frozenset(UNIVERSE[:10]), frozenset(UNIVERSE[12:14]), frozenset(UNIVERSE[:3]))
    assert isinstance(m, MemberSet)
    back = via(m)
    assert back == m and m == back and hash(back) == hash(m)


def test_non_sets_are_refused_as_frozenset_refuses_them() -> None:
    m = changed(frozenset(UNIVERSE[:3]), frozenset(UNIVERSE[5:6]), frozenset())
    assert m != list(m) and not (m == list(m))
    for op in (operator.sub, operator.or_, operator.and_, operator.xor, operator.le):
        with pytest.raises(TypeError):
            op(m, list(m))
        with pytest.raises(TypeError):
            op(list(m), m)
    assert m.isdisjoint(["x"]) and not m.isdisjoint(iter([UNIVERSE[5]]))


def test_removed_must_come_from_the_base() -> None:
    with pytest.raises(ValueError):
        MemberSet(frozenset({"a"}), frozenset(), frozenset({"a", "b"}))


def test_a_set_on_the_left_gives_a_set_as_with_frozensets() -> None:
    m = changed(frozenset(UNIVERSE[:6]), frozenset(UNIVERSE[8:10]), frozenset(UNIVERSE[:2]))
    ref = frozenset(m)
    left = set(UNIVERSE[4:12])
    for op in (operator.sub, operator.or_, operator.and_, operator.xor):
        got, want = op(left, m), op(left, ref)
        assert got == want and type(got) is type(want) is set, op
        got, want = op(m, left), op(ref, left)
        assert got == want and type(got) is type(want) is frozenset, op
    assert m == set(ref) and set(ref) == m and m <= left | ref and left | ref >= m
