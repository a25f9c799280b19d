"""The agent's state file: what is saved loads back equal, whatever the members hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeagent import state_store
from stockade.member_set import changed
from stockade.state import FamilyState, IPSet, NodeState, digest


def _state(members: frozenset[str] | object, nomatch: frozenset[str] = frozenset()) -> NodeState:
    s = IPSet("stk-a", "hash:net", "inet", members, nomatch, comment='ns "a"\\b')  # type: ignore[arg-type]
    return NodeState("n0", {"stk-a": s}, FamilyState({}, ()))


@pytest.mark.parametrize("members", [
    pytest.param(frozenset(), id="empty"),
    pytest.param(frozenset({"198.18.0.1"}), id="one"),
    pytest.param(frozenset(f"198.18.{i // 250}.{i % 250}" for i in range(3000)), id="many"),
    pytest.param(frozenset({"198.18.0.1,tcp:80", "198.18.0.0/16"}), id="ipset-syntax"),
    # not ipset text (the agent never applies these), but the file must still be right
    pytest.param(frozenset({'a"b', "c\\d", "e\nf", "g", "é"}), id="needs-escaping"),
    pytest.param(frozenset({'","', "x"}), id="separator-inside"),
    pytest.param(frozenset({"c\\d", "x"}), id="backslash"),
    pytest.param(frozenset({'a"b', "x"}), id="quote"),
])
def test_saved_state_loads_back_equal(tmp_path: Path, members: frozenset[str]) -> None:
    st = _state(members, frozenset({"198.18.1.0/24"}) if members else frozenset())
    state_store.save(str(tmp_path), st)
    raw = json.loads((tmp_path / state_store.FILE).read_text())
    assert sorted(raw["sets"]["stk-a"]["members"]) == sorted(members)
    loaded = state_store.load(str(tmp_path))
    assert loaded == st and loaded is not None and digest(loaded) == digest(st)


def test_member_set_members_are_saved_like_frozensets(tmp_path: Path) -> None:
    base = frozenset(f"198.18.0.{i}" for i in range(1, 200))
    ms = changed(base, frozenset({"198.18.1.1"}), frozenset({"198.18.0.7"}))
    enc = state_store.Encoder()
    state_store.save(str(tmp_path), _state(ms), encoder=enc)
    assert state_store.load(str(tmp_path)) == _state(frozenset(ms))
