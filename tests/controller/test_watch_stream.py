"""The watch loop's protocol handling, driven by a scripted API: stream
contents the emulator does not produce (garbage lines inside a 200 stream,
non-410 ERROR events, unknown event types, a server closing at once),
paging, and malformed objects.  Each request the watcher makes is recorded,
so the tests check where it resumed from."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from controller.settings import WatchSettings
from controller.watch import Change, Listed, Message, Watcher
from tests.controller.kube import eventually

pytestmark = pytest.mark.timeout(10)

S = WatchSettings(read_timeout=1.0, connect_timeout=1.0, list_timeout=1.0, backoff_initial=0.001,
                  backoff_max=0.002, min_stream_seconds=0.5)


class Content:
    def __init__(self, lines: list[bytes], hang: bool) -> None:
        self.lines = lines
        self.hang = hang

    async def readline(self) -> bytes:
        if self.lines:
            return self.lines.pop(0)
        if self.hang:
            await asyncio.sleep(3600)
        return b""

    async def read(self, n: int = -1) -> bytes:
        return b"".join(self.lines)


class Resp:
    def __init__(self, status: int, body: bytes = b"", lines: list[bytes] | None = None, hang: bool = False) -> None:
        self.status = status
        self.content = Content(lines if lines is not None else [body], hang)
        self._body = body
        self.closed = False

    async def read(self) -> bytes:
        return self._body

    def close(self) -> None:
        self.closed = True


class API:
    """Answers list and watch calls from scripts; records every call's arguments."""

    def __init__(self) -> None:
        self.lists: list[Resp] = []
        self.watches: list[Resp] = []
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, **kw: Any) -> Resp:
        self.calls.append(kw)
        queue = self.watches if kw.get("watch") else self.lists
        if not queue:
            return Resp(200, lines=[], hang=True)  # an idle stream
        return queue.pop(0)

    def watch_rvs(self) -> list[str]:
        return [c["resource_version"] for c in self.calls if c.get("watch")]


def obj(name: str, rv: str, app: str = "x") -> dict[str, Any]:
    return {"metadata": {"namespace": "a", "name": name, "resourceVersion": rv, "labels": {"app": app}}}


def listing(rv: str, *items: dict[str, Any], cont: str = "") -> Resp:
    meta: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return Resp(200, json.dumps({"kind": "PodList", "metadata": meta, "items": list(items)}).encode())


def ev(etype: str, o: Mapping[str, Any]) -> bytes:
    return json.dumps({"type": etype, "object": o}).encode() + b"\n"


def project(o: Mapping[str, Any]) -> object:
    labels = o["metadata"].get("labels", {})
    if labels.get("app") == "broken":
        raise ValueError("metadata.labels.app: 'broken' is not acceptable")
    return ("pod", labels.get("app"))


class Run:
    def __init__(self, api: API) -> None:
        self.msgs: list[Message] = []
        self.w = Watcher("Pod", api, project, self.msgs.extend, S)
        self.task = asyncio.create_task(self.w.run())

    def changes(self) -> list[tuple[str, object]]:
        return [(m.key, m.value) for m in self.msgs if isinstance(m, Change)]

    def lists(self) -> int:
        return sum(1 for m in self.msgs if isinstance(m, Listed))

    async def stop(self) -> None:
        self.w.stop()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def run() -> Any:
    runs: list[Run] = []

    def start(api: API) -> Run:
        runs.append(Run(api))
        return runs[-1]

    yield start
    for r in runs:
        await r.stop()


async def test_garbage_line_in_stream_resumes_from_last_good_event(run: Any) -> None:
    api = API()
    api.lists.append(listing("10", obj("p", "5")))
    api.watches.append(Resp(200, lines=[ev("MODIFIED", obj("p", "11", "y")), b"<html>502</html>\n"]))
    r = run(api)
    await eventually(lambda: len(api.watch_rvs()) >= 2)
    assert api.watch_rvs()[:2] == ["10", "11"]
    assert r.changes() == [("a/p", ("pod", "x")), ("a/p", ("pod", "y"))]
    assert r.lists() == 1 and "bad_json" in r.w.status().last_error and "<html>502</html>" in r.w.status().last_error


@pytest.mark.parametrize(("line", "reason"), [
    pytest.param(ev("ERROR", {"kind": "Status", "code": 500, "message": "etcd timeout"}), "watch_error: ERROR event 500",
                 id="error-500"),
    pytest.param(ev("SURPRISE", {}), "unknown watch event type 'SURPRISE'", id="unknown-type"),
    pytest.param(b'{"type": "ADDED"}\n', "not a watch event", id="no-object"),
    pytest.param(b'"just a string"\n', "not a watch event", id="json-string"),
])
async def test_stream_errors_resume_without_relist(run: Any, line: bytes, reason: str) -> None:
    api = API()
    api.lists.append(listing("10", obj("p", "5")))
    api.watches.append(Resp(200, lines=[b"\n", line]))
    r = run(api)
    await eventually(lambda: len(api.watch_rvs()) >= 2)
    assert api.watch_rvs()[:2] == ["10", "10"] and r.lists() == 1
    assert reason in r.w.status().last_error


async def test_object_of_another_kind_in_the_stream_relists(run: Any) -> None:
    api = API()
    api.lists += [listing("10", obj("p", "5")), listing("20", obj("p", "5"), obj("q", "15"))]
    api.watches.append(Resp(200, lines=[ev("ADDED", {**obj("x", "11"), "kind": "Secret"})]))
    r = run(api)
    await eventually(lambda: r.lists() == 2)
    assert "watch of Pod sent a 'Secret' object" in r.w.status().last_error
    assert r.changes() == [("a/p", ("pod", "x")), ("a/q", ("pod", "x"))]  # the Secret never got in
    await eventually(lambda: api.watch_rvs()[-1:] == ["20"])


async def test_error_410_event_relists(run: Any) -> None:
    api = API()
    api.lists += [listing("10", obj("p", "5"), obj("q", "6")), listing("20", obj("p", "5"), obj("r", "19"))]
    api.watches.append(Resp(200, lines=[ev("ERROR", {"kind": "Status", "code": 410, "reason": "Expired"})]))
    r = run(api)
    await eventually(lambda: r.lists() == 2)
    assert r.changes()[2:] == [("a/q", None), ("a/r", ("pod", "x"))]
    await eventually(lambda: api.watch_rvs()[-1:] == ["20"])


async def test_server_closing_at_once_backs_off(run: Any) -> None:
    api = API()
    api.lists.append(listing("10"))
    api.watches += [Resp(200, lines=[]) for _ in range(3)]
    r = run(api)
    await eventually(lambda: len(api.watch_rvs()) >= 4)
    assert r.w.status().errors == 3 and "closed at once" in r.w.status().last_error


async def test_list_pages_are_chained_and_delivered_at_once(run: Any) -> None:
    api = API()
    api.lists += [listing("", obj("p1", "1"), cont="tok1"), listing("", obj("p2", "2"), cont="tok2"),
                  listing("30", obj("p3", "3"))]
    r = run(api)
    await eventually(lambda: r.lists() == 1)
    assert [c.get("_continue") for c in api.calls if not c.get("watch")] == [None, "tok1", "tok2"]
    assert [k for k, _ in r.changes()] == ["a/p1", "a/p2", "a/p3"]
    await eventually(lambda: api.watch_rvs()[:1] == ["30"])


@pytest.mark.parametrize(("body", "msg"), [
    pytest.param(b"<html>oops</html>", "list body is not a Pod list", id="html"),
    pytest.param(b'{"kind": "SecretList", "metadata": {}, "items": []}', "answered with kind 'SecretList'", id="wrong-kind"),
])
async def test_bad_list_body_is_retried(run: Any, body: bytes, msg: str) -> None:
    api = API()
    api.lists += [Resp(200, body), listing("10", obj("p", "1"))]
    r = run(api)
    await eventually(lambda: r.lists() == 1)
    assert r.w.status().errors == 1 and msg in r.w.status().last_error


async def test_malformed_object_is_reported_and_loses_nothing(run: Any) -> None:
    """An object the projector rejects: the error names it; its last good
    projection is kept (no delete), the others flow, and the stream goes on."""
    api = API()
    api.lists += [listing("10", obj("p", "1"), obj("q", "2")),
                  listing("30", obj("p", "25", "broken"), obj("q", "2"))]
    api.watches += [Resp(200, lines=[ev("MODIFIED", obj("p", "11", "broken")), ev("MODIFIED", obj("q", "12", "z")),
                                     ev("ERROR", {"code": 410})])]
    r = run(api)
    await eventually(lambda: r.lists() == 2)
    st = r.w.status()
    assert "a/p" in st.last_error and "'broken' is not acceptable" in st.last_error
    assert ("a/p", None) not in r.changes()
    # q changed to z by watch, and back to x by the relist; p is never dropped.
    assert r.changes() == [("a/p", ("pod", "x")), ("a/q", ("pod", "x")), ("a/q", ("pod", "z")), ("a/q", ("pod", "x"))]
    assert set(r.w.cache) == {"a/p", "a/q"}


async def test_relist_does_not_reproject_objects_with_the_same_version() -> None:
    api = API()
    api.lists += [listing("10", obj("p", "5"), obj("q", "6")), listing("20", obj("p", "5"), obj("q", "16", "z"))]
    api.watches.append(Resp(200, lines=[ev("ERROR", {"code": 410})]))
    projected: list[str] = []

    def counting(o: Mapping[str, Any]) -> object:
        projected.append(f"{o['metadata']['name']}@{o['metadata']['resourceVersion']}")
        return project(o)

    msgs: list[Message] = []
    w = Watcher("Pod", api, counting, msgs.extend, S)
    task = asyncio.create_task(w.run())
    try:
        await eventually(lambda: sum(isinstance(m, Listed) for m in msgs) == 2)
        assert projected == ["p@5", "q@6", "q@16"]
        assert w.cache["a/q"].value == ("pod", "z")
    finally:
        w.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
