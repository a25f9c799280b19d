"""The pure store: metadata the apiserver owns, versions, history window, exact lists."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from stockade.kubeemu.errors import ApiError
from stockade.kubeemu.store import Event, Store, parse_rv
from tests.kubeemu.conftest import netpol, pod


def make_store(history: int = 100) -> tuple[Store, list[Event]]:
    store = Store(history=history, clock=lambda: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), rng=random.Random(7),
                  initial_namespaces=["default"])
    events: list[Event] = []
    store.listeners.append(events.append)
    return store, events


def relabel(store: Store, name: str, labels: dict[str, str], ns: str = "default") -> dict[str, Any]:
    return store.patch("pods", name, lambda p: {**p, "metadata": {**p["metadata"], "labels": labels}}, ns)


def test_create_fills_what_the_apiserver_owns() -> None:
    store, events = make_store()
    created = store.create("pods", pod("a", labels={"app": "x"}, ip="10.1.1.1"), "default")
    meta = created["metadata"]
    assert meta["creationTimestamp"] == "2026-01-02T03:04:05Z"
    assert meta["generation"] == 1 and meta["resourceVersion"] == "2" and len(meta["uid"]) == 36
    assert created["status"]["podIPs"] == [{"ip": "10.1.1.1"}] and created["status"]["phase"] == "Running"
    ns = store.create("namespaces", {"metadata": {"name": "team", "labels": {"a": "b"}}})
    assert ns["metadata"]["labels"] == {"a": "b", "kubernetes.io/metadata.name": "team"}
    assert ns["status"] == {"phase": "Active"} and ns["kind"] == "Namespace" and ns["apiVersion"] == "v1"
    assert [(e.type, e.name, e.rv) for e in events] == [("ADDED", "a", 2), ("ADDED", "team", 3)]
    assert store.create("nodes", {"metadata": {"name": "n1", "namespace": "ignored"}})["metadata"].get(
        "namespace") is None


@pytest.mark.parametrize(
    ("action", "code", "reason"),
    [
        pytest.param(lambda s: s.create("pods", pod("a"), "default"), 409, "AlreadyExists", id="duplicate"),
        pytest.param(lambda s: s.create("pods", pod("b", "nowhere"), "nowhere"), 404, "NotFound", id="no-namespace"),
        pytest.param(lambda s: s.create("pods", pod("b", "other"), "default"), 400, "BadRequest", id="ns-mismatch"),
        pytest.param(lambda s: s.create("pods", {"metadata": {}}, "default"), 422, "Invalid", id="no-name"),
        pytest.param(lambda s: s.create("pods", {"kind": "Node", "metadata": {"name": "x"}}, "default"), 400,
                     "BadRequest", id="wrong-kind"),
        pytest.param(lambda s: s.get("pods", "zz", "default"), 404, "NotFound", id="get-missing"),
        pytest.param(lambda s: s.update("pods", {**pod("a"), "metadata": {"name": "a", "resourceVersion": "1"}},
                                        "default"), 409, "Conflict", id="stale-update"),
        pytest.param(lambda s: s.update("pods", pod("zz"), "default"), 404, "NotFound", id="update-missing"),
        pytest.param(lambda s: s.update("pods", pod("a"), "default", name="b"), 400, "BadRequest", id="name-mismatch"),
        pytest.param(lambda s: s.delete("pods", "a", "default", {"uid": "nope"}), 409, "Conflict",
                     id="delete-uid-precondition"),
        pytest.param(lambda s: s.list("pods", rv=999), 504, "Timeout", id="too-large-rv"),
        pytest.param(lambda s: s.delete("namespaces", "default"), 403, "Forbidden", id="immortal-namespace"),
    ],
)
def test_errors(action: Any, code: int, reason: str) -> None:
    store, _ = make_store()
    store.create("pods", pod("a"), "default")
    relabel(store, "a", {"v": "2"})
    with pytest.raises(ApiError) as info:
        action(store)
    assert (info.value.code, info.value.reason) == (code, reason)
    assert info.value.status()["code"] == code


def test_update_rules() -> None:
    store, events = make_store()
    created = store.create("pods", pod("a"), "default")
    same = store.update("pods", created, "default")
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"] and len(events) == 1
    labelled = relabel(store, "a", {"x": "1"})
    assert labelled["metadata"]["generation"] == 1
    spec = store.patch("pods", "a", lambda p: {**p, "spec": {**p["spec"], "nodeName": "n9"}}, "default")
    assert spec["metadata"]["generation"] == 2
    assert spec["metadata"]["uid"] == created["metadata"]["uid"]
    ignored = store.patch("pods", "a", lambda p: {**p, "status": {"phase": "Failed"}}, "default")
    assert ignored["status"]["phase"] == "Running"
    status = store.patch("pods", "a", lambda p: {**p, "status": {"phase": "Failed"}, "spec": {}}, "default",
                         subresource="status")
    assert status["status"] == {"phase": "Failed"} and status["spec"]["nodeName"] == "n9"
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED"]


def test_dry_run_changes_nothing() -> None:
    store, events = make_store()
    store.create("pods", pod("a"), "default", dry_run=True)
    assert store.list("pods")[0] == [] and events == []


def test_namespace_deletion_cascades() -> None:
    store, events = make_store()
    store.create("namespaces", {"metadata": {"name": "shop"}})
    store.create("pods", pod("p", "shop"), "shop")
    store.create("networkpolicies", netpol("np", "shop"), "shop")
    store.create("pods", pod("keep"), "default")
    gone = store.delete("namespaces", "shop")
    assert gone["status"]["phase"] == "Terminating"
    assert [(e.type, e.key[1], e.name) for e in events[-3:]] == [
        ("DELETED", "pods", "p"), ("DELETED", "networkpolicies", "np"), ("DELETED", "namespaces", "shop")]
    assert [p["metadata"]["name"] for p in store.list("pods")[0]] == ["keep"]


def test_history_window_and_expiry_message() -> None:
    store, _ = make_store(history=3)
    for i in range(5):
        store.create("configmaps", {"metadata": {"name": f"c{i}"}}, "default")
    assert store.resource_version == 6 and store.floor == 3
    assert [e.name for e in store.events_since(3)] == ["c2", "c3", "c4"]
    with pytest.raises(ApiError) as info:
        store.events_since(2)
    assert info.value.status() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                   "message": "too old resource version: 2 (3)", "reason": "Expired", "code": 410}


def test_exact_list_undoes_newer_events() -> None:
    store, _ = make_store(history=10)
    store.create("pods", pod("a"), "default")
    store.create("pods", pod("b"), "default")
    at = store.resource_version
    relabel(store, "a", {"new": "1"})
    store.delete("pods", "b", "default")
    store.create("pods", pod("c"), "default")
    items, rv = store.list("pods", "default", rv=at, exact=True)
    assert rv == at and [(p["metadata"]["name"], p["metadata"]["labels"]) for p in items] == [("a", {}), ("b", {})]
    now, rv_now = store.list("pods", "default", rv=at)
    assert rv_now == store.resource_version and [p["metadata"]["name"] for p in now] == ["a", "c"]
    store.compact()
    with pytest.raises(ApiError) as info:
        store.list("pods", rv=at, exact=True)
    assert info.value.code == 410 and info.value.message == "The resourceVersion for the provided list is too old."


@pytest.mark.parametrize(("text", "value"), [
    pytest.param(None, None, id="absent"), pytest.param("", None, id="empty"), pytest.param("42", 42, id="number")])
def test_parse_rv(text: str | None, value: int | None) -> None:
    assert parse_rv(text) == value


@pytest.mark.parametrize("text", [pytest.param("abc", id="word"), pytest.param("-1", id="negative")])
def test_parse_rv_rejects(text: str) -> None:
    with pytest.raises(ApiError):
        parse_rv(text)


def test_generate_name_is_deterministic_with_seeded_rng() -> None:
    store, _ = make_store()
    a = store.create("configmaps", {"metadata": {"generateName": "x-"}}, "default")["metadata"]["name"]
    assert a.startswith("x-") and len(a) == 7
    assert store.registry.resolve("netpol").plural == "networkpolicies"
    assert store.registry.resolve("deployments.apps").kind == "Deployment"


def test_put_creates_then_replaces_including_status() -> None:
    store, events = make_store()
    store.put("pods", pod("a", ip="10.0.0.1"))
    store.put("pods", {**pod("a", ip="10.0.0.2"), "metadata": {**pod("a")["metadata"], "resourceVersion": "1"}})
    assert store.get("pods", "a", "default")["status"]["podIP"] == "10.0.0.2"
    store.put("nodes", {"metadata": {"name": "n1", "labels": {"x": "1"}}})
    store.put("nodes", {"metadata": {"name": "n1", "labels": {"x": "2"}}})
    assert store.get("nodes", "n1")["metadata"]["labels"] == {"x": "2"}
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "ADDED", "MODIFIED"]
