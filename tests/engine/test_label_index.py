"""The label index: group members and the edges one change produces."""

from __future__ import annotations

import pytest

from controller.label_index import ALL_PODS, GroupIndex, GroupSpec, group_id
from controller.model import LabelSelector, Requirement
from tests.engine.builders import pod, sel

WEB = sel({"app": "web"})
NOT_DB = LabelSelector((), (Requirement("app", "NotIn", ("db",)),))
SPECS = {
    "web-in-a": GroupSpec("a", None, WEB),
    "all-in-a": GroupSpec("a", None, sel()),
    "web-in-team-x": GroupSpec(None, sel({"team": "x"}), WEB),
    "not-db-anywhere": GroupSpec(None, sel(), NOT_DB),
    "all": ALL_PODS,
}
PODS = [pod("a/web", "n1", "10.0.0.1", app="web"), pod("a/db", "n1", "10.0.0.2", app="db"),
        pod("b/web", "n2", "10.0.0.3", app="web"), pod("c/web", "n2", "10.0.0.4", app="web"),
        pod("c/host", "n2", "10.9.9.9", host_network=True, app="web"),
        pod("c/done", "n2", "10.0.0.5", phase="Failed", app="web")]


def index(pods_first: bool) -> GroupIndex:
    ix = GroupIndex()
    ix.set_namespace("b", {"team": "x"})
    if pods_first:
        for p in PODS:
            ix.set_pod(p.key, p)
    for name, spec in SPECS.items():
        assert ix.acquire(name, spec)
    if not pods_first:
        for p in PODS:
            ix.set_pod(p.key, p)
    return ix


@pytest.mark.parametrize("pods_first", [pytest.param(True, id="pods-first"), pytest.param(False, id="groups-first")])
@pytest.mark.parametrize(("group", "members"), [
    pytest.param("web-in-a", {"a/web"}, id="ns-scoped"),
    pytest.param("all-in-a", {"a/web", "a/db"}, id="empty-selector"),
    pytest.param("web-in-team-x", {"b/web"}, id="namespace-selector"),
    pytest.param("not-db-anywhere", {"a/web", "b/web", "c/web"}, id="notin-everywhere"),
    pytest.param("all", {"a/web", "a/db", "b/web", "c/web"}, id="all-enforced-pods"),
])
def test_members_do_not_depend_on_order(pods_first: bool, group: str, members: set[str]) -> None:
    assert index(pods_first).members(group) == members


def test_edges_of_one_pod_and_one_namespace_change() -> None:
    ix = index(True)
    left, joined, stayed = ix.set_pod("a/web", pod("a/web", "n1", "10.0.0.1", app="db"))
    assert (left, joined, stayed) == ({"web-in-a", "not-db-anywhere"}, set(), {"all-in-a", "all"})
    edges = ix.set_namespace("c", {"team": "x"})
    assert edges == [("web-in-team-x", "c/web", True)]
    assert sorted(ix.set_namespace("b", None)) == [("web-in-team-x", "b/web", False)]
    assert ix.set_pod("c/web", None) == ({"web-in-team-x", "not-db-anywhere", "all"}, set(), set())


def test_release_and_ids() -> None:
    ix = index(True)
    assert not ix.acquire("all", ALL_PODS)  # shared: a second user
    assert not ix.release("all") and ix.release("all") and not ix.has("all")
    assert group_id(GroupSpec("a", None, WEB)) == group_id(GroupSpec("a", None, sel({"app": "web"})))
    assert group_id(GroupSpec("a", None, WEB)) != group_id(GroupSpec(None, sel({"kubernetes.io/metadata.name": "a"}), WEB))
