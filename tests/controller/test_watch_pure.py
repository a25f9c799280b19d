"""The pure pieces of the watch loop: backoff, event application, relist reconciliation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.settings import WatchSettings
from controller.watch import BadObject, Cached, apply_event, backoff_delay, object_key, reconcile

S = WatchSettings(backoff_initial=0.5, backoff_max=8.0, backoff_jitter=0.5)


@pytest.mark.parametrize(("attempt", "r", "want"), [
    pytest.param(0, 0.0, 0.5, id="first-no-jitter"),
    pytest.param(1, 0.0, 1.0, id="doubles"),
    pytest.param(3, 0.0, 4.0, id="third"),
    pytest.param(4, 0.0, 8.0, id="reaches-max"),
    pytest.param(50, 0.0, 8.0, id="capped"),
    pytest.param(2000, 0.0, 8.0, id="huge-attempt-no-overflow"),
    pytest.param(0, 0.999999, 0.25, id="full-jitter-halves"),
    pytest.param(4, 0.5, 6.0, id="jitter-at-max"),
])
def test_backoff_delay(attempt: int, r: float, want: float) -> None:
    assert backoff_delay(attempt, S, r) == pytest.approx(want, rel=1e-5)


def test_backoff_is_monotonic_and_bounded() -> None:
    delays = [backoff_delay(a, S, 0.0) for a in range(20)]
    assert delays == sorted(delays)
    assert max(delays) == S.backoff_max


@pytest.mark.parametrize(("kind", "obj", "want"), [
    pytest.param("Pod", {"metadata": {"namespace": "a", "name": "p", "resourceVersion": "7"}}, ("a/p", "7"), id="pod"),
    pytest.param("Node", {"metadata": {"name": "n1", "resourceVersion": "9"}}, ("n1", "9"), id="node"),
    pytest.param("Namespace", {"metadata": {"name": "a"}}, ("a", ""), id="no-rv"),
    pytest.param("NetworkPolicy", {"metadata": {"namespace": "x", "name": "np"}}, ("x/np", ""), id="policy"),
])
def test_object_key(kind: str, obj: dict[str, object], want: tuple[str, str]) -> None:
    assert object_key(kind, obj) == want


@pytest.mark.parametrize(("kind", "obj", "msg"), [
    pytest.param("Pod", {}, "metadata.name", id="no-metadata"),
    pytest.param("Pod", {"metadata": {"name": "p"}}, "metadata.namespace", id="pod-no-namespace"),
    pytest.param("Node", {"metadata": {"name": ""}}, "metadata.name", id="empty-name"),
])
def test_object_key_errors_name_the_field(kind: str, obj: dict[str, object], msg: str) -> None:
    with pytest.raises(BadObject, match=msg):
        object_key(kind, obj)


@pytest.mark.parametrize(("cache", "etype", "key", "rv", "value", "changed", "after"), [
    pytest.param({}, "ADDED", "a", "1", "A", True, {"a": ("1", "A")}, id="add"),
    pytest.param({"a": ("1", "A")}, "MODIFIED", "a", "1", "A2", False, {"a": ("1", "A")}, id="same-rv-dropped"),
    pytest.param({"a": ("1", "A")}, "MODIFIED", "a", "2", "A", False, {"a": ("2", "A")}, id="equal-projection-dropped-rv-kept"),
    pytest.param({"a": ("1", "A")}, "MODIFIED", "a", "2", "B", True, {"a": ("2", "B")}, id="modify"),
    pytest.param({"a": ("1", "A")}, "ADDED", "a", "3", "B", True, {"a": ("3", "B")}, id="re-add-after-relist"),
    pytest.param({"a": ("1", "A")}, "DELETED", "a", "4", None, True, {}, id="delete"),
    pytest.param({}, "DELETED", "a", "4", None, False, {}, id="delete-unknown-dropped"),
])
def test_apply_event(cache: dict[str, tuple[str, str]], etype: str, key: str, rv: str, value: str | None,
                     changed: bool, after: dict[str, tuple[str, str]]) -> None:
    c = {k: Cached(*v) for k, v in cache.items()}
    got_changed, new = apply_event(c, etype, key, rv, value)
    assert got_changed is changed
    assert {k: (v.resource_version, v.value) for k, v in c.items()} == after
    if changed:
        assert new == value


@pytest.mark.parametrize(("cache", "listed", "changes"), [
    pytest.param({}, {"a": "A"}, [("a", "A")], id="initial"),
    pytest.param({"a": "A", "b": "B"}, {"a": "A", "b": "B"}, [], id="nothing-changed-no-spurious-events"),
    pytest.param({"a": "A", "b": "B"}, {"a": "A"}, [("b", None)], id="missed-delete"),
    pytest.param({"a": "A"}, {"a": "A2", "c": "C"}, [("a", "A2"), ("c", "C")], id="missed-update-and-add"),
    pytest.param({"a": "A", "b": "B"}, {}, [("a", None), ("b", None)], id="everything-gone"),
    pytest.param({"b": "B", "a": "A"}, {"c": "C", "a": "X"}, [("a", "X"), ("b", None), ("c", "C")], id="sorted-by-key"),
])
def test_reconcile(cache: dict[str, str], listed: dict[str, str], changes: list[tuple[str, str | None]]) -> None:
    old = {k: Cached("1", v) for k, v in cache.items()}
    new = {k: Cached("2", v) for k, v in listed.items()}
    new_cache, got = reconcile(old, new)
    assert got == changes
    assert new_cache == new


def test_reconcile_result_depends_only_on_final_state() -> None:
    """Whatever the cache held, applying the changes gives the listed state."""
    listed = {"a": Cached("5", "A"), "b": Cached("6", "B")}
    for cache in ({}, {"a": Cached("1", "old")}, {"z": Cached("1", "Z")}, dict(listed)):
        _, changes = reconcile(cache, listed)
        state = {k: c.value for k, c in cache.items()}
        for k, v in changes:
            if v is None:
                del state[k]
            else:
                state[k] = v
        assert state == {"a": "A", "b": "B"}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 3)),
       st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 3)))
def test_reconcile_property(cache: dict[str, int], listed: dict[str, int]) -> None:
    """For any cache and list: the changes turn the cache into the list,
    name no key whose value is equal on both sides, and delete only keys
    that are gone."""
    old = {k: Cached("1", v) for k, v in cache.items()}
    new = {k: Cached("2", v) for k, v in listed.items()}
    _, changes = reconcile(old, new)
    state: dict[str, object] = dict(cache)
    for k, v in changes:
        assert not (k in cache and k in listed and cache[k] == listed[k]), k
        if v is None:
            assert k not in listed
            del state[k]
        else:
            state[k] = v
    assert state == listed
