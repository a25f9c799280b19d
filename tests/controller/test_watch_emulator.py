"""The list-and-watch loop against the real Kubernetes API emulator.

Each failure mode the kubernetes-asyncio Watch helper gets wrong is
reproduced with the emulator's faults: cut streams, forced 410, 500s,
a proxy's HTML 502, delays and stalls.  The watcher's sink records what
it forwards, so every test also checks that nothing spurious was sent
(no duplicate adds, no deletes of live objects) and nothing was lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from controller import parse
from controller.settings import WatchSettings
from controller.watch import Change, Listed, Message, Watcher, api_call
from tests.controller.conftest import FAST_WATCH as FAST
from tests.controller.kube import Kube, eventually, namespace, pod

pytestmark = pytest.mark.timeout(30)

class Recorder:
    """A sink that keeps every message and the state they add up to."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.state: dict[str, object] = {}
        self.listed = 0

    def __call__(self, msgs: Sequence[Message]) -> None:
        for m in msgs:
            self.messages.append(m)
            if isinstance(m, Listed):
                self.listed += 1
            elif m.value is None:
                assert m.key in self.state, f"spurious delete of {m.key}"
                del self.state[m.key]
            else:
                self.state[m.key] = m.value

    def changes(self) -> list[Change]:
        return [m for m in self.messages if isinstance(m, Change)]


def project_pod(o: Mapping[str, Any]) -> object:
    return parse.parse_pod(dict(o))


class Running:
    def __init__(self, w: Watcher, rec: Recorder, task: Any) -> None:
        self.w, self.rec, self.task = w, rec, task


@pytest.fixture
async def pods(api: Any) -> AsyncIterator[Any]:
    """Start a Pod watcher with FAST settings (or given ones)."""
    import asyncio

    tasks: list[asyncio.Task[None]] = []

    def start(settings: WatchSettings = FAST, **kw: Any) -> Running:
        rec = Recorder()
        w = Watcher("Pod", api_call(api, "Pod"), project_pod, rec, settings, **kw)
        tasks.append(asyncio.create_task(w.run()))
        return Running(w, rec, tasks[-1])

    yield start
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def labels_of(rec: Recorder, key: str) -> dict[str, str]:
    v = rec.state[key]
    assert isinstance(v, parse.Pod)
    return dict(v.labels)


async def seed(kube: Kube, n: int = 3) -> list[dict[str, Any]]:
    await kube.create(namespace("a"))
    objs = [pod("a", f"p{i}", {"app": "x"}, "n1", f"10.0.0.{i + 1}") for i in range(n)]
    await kube.create(*objs)
    return objs


async def test_list_then_watch_add_modify_delete(kube: Kube, pods: Any) -> None:
    objs = await seed(kube)
    r = pods()
    await eventually(lambda: r.rec.listed == 1, what="first list")
    assert sorted(r.rec.state) == ["a/p0", "a/p1", "a/p2"]
    await kube.create(pod("a", "p3", {"app": "y"}, "n2", "10.0.0.9"))
    await kube.replace(pod("a", "p0", {"app": "changed"}, "n1", "10.0.0.1"))
    await kube.delete(objs[1])
    await eventually(lambda: sorted(r.rec.state) == ["a/p0", "a/p2", "a/p3"]
                     and labels_of(r.rec, "a/p0") == {"app": "changed"}, what="watch events")
    assert r.w.status().connected and r.w.resource_version


async def test_unchanged_projection_dropped_at_the_door(kube: Kube, pods: Any) -> None:
    objs = await seed(kube, 1)
    r = pods()
    await eventually(lambda: r.rec.listed == 1)
    before = len(r.rec.changes())
    annotated = {**objs[0], "metadata": {**objs[0]["metadata"], "annotations": {"note": "irrelevant"}}}
    await kube.replace(annotated)  # new resourceVersion, same projection
    await kube.create(pod("a", "marker", {}, "n1", "10.0.0.50"))
    await eventually(lambda: "a/marker" in r.rec.state)
    assert [c.key for c in r.rec.changes()[before:]] == ["a/marker"]


async def test_cut_stream_resumes_from_last_version_without_relist(emu: Any, kube: Kube, pods: Any) -> None:
    await seed(kube)
    r = pods()
    await eventually(lambda: r.rec.listed == 1 and r.w.status().connected)
    for clean in (False, True):
        emu.faults.cut_watches(clean=clean)
        await kube.create(pod("a", f"after-cut-{clean}", {}, "n1", f"10.0.1.{int(clean)}"))
        await eventually(lambda c=clean: f"a/after-cut-{c}" in r.rec.state, what="event after cut")
    st = r.w.status()
    assert st.relists == 0 and r.rec.listed == 1
    assert st.restarts >= 2
    keys = [c.key for c in r.rec.changes()]
    assert len(keys) == len(set(keys)) == 5, keys  # nothing delivered twice


async def test_forced_410_relist_reconciles_without_spurious_events(emu: Any, kube: Kube, pods: Any) -> None:
    objs = await seed(kube, 4)
    r = pods()
    await eventually(lambda: r.rec.listed == 1 and r.w.status().connected)
    emu.faults.expire_next(1)
    emu.faults.cut_watches(clean=True)
    await eventually(lambda: r.w.status().relists == 1 and r.rec.listed == 2, what="relist after 410")
    assert len(r.rec.changes()) == 4  # the relist found nothing new: no event at all
    await kube.delete(objs[0])
    await eventually(lambda: "a/p0" not in r.rec.state)


async def test_410_after_missed_changes_applies_exactly_the_differences(emu: Any, kube: Kube, pods: Any) -> None:
    """Changes made while the watcher was away are recovered by the relist:
    one update, one delete, one add; unchanged objects produce nothing."""
    import asyncio

    objs = await seed(kube, 4)
    r = pods()
    await eventually(lambda: r.rec.listed == 1)
    r.task.cancel()  # the watcher is away ...
    await asyncio.gather(r.task, return_exceptions=True)
    n_before = len(r.rec.changes())
    await kube.replace(pod("a", "p1", {"app": "moved"}, "n1", "10.0.0.2"))
    await kube.delete(objs[2])
    await kube.create(pod("a", "new", {}, "n2", "10.0.0.77"))
    emu.faults.expire_next(1)
    t2 = asyncio.create_task(r.w.run())  # resumes watching from its old version: 410
    try:
        await eventually(lambda: r.w.status().relists == 1 and r.rec.listed == 2, what="relist")
        got = [(c.key, c.value is None) for c in r.rec.changes()[n_before:]]
        assert got == [("a/new", False), ("a/p1", False), ("a/p2", True)]
        assert labels_of(r.rec, "a/p1") == {"app": "moved"}
        assert sorted(r.rec.state) == ["a/new", "a/p0", "a/p1", "a/p3"]
    finally:
        t2.cancel()


async def test_500s_are_retried_with_growing_backoff(emu: Any, kube: Kube, pods: Any) -> None:
    await seed(kube, 1)
    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(d)

    emu.faults.fail_next(3, code=500, path_prefix="/api/v1/pods")
    r = pods(sleep=sleep, rand=lambda: 0.0)
    await eventually(lambda: r.rec.listed == 1, what="list after 500s")
    assert slept[:3] == [0.02, 0.04, 0.08]
    st = r.w.status()
    assert st.errors == 3 and "HTTP 500" in st.last_error
    assert sorted(r.rec.state) == ["a/p0"]


async def test_html_502_is_an_error_not_events(emu: Any, kube: Kube, pods: Any) -> None:
    await seed(kube, 1)
    r = pods()
    await eventually(lambda: r.rec.listed == 1 and r.w.status().connected)
    emu.faults.bad_gateway_next(2, path_prefix="/api/v1/pods")
    emu.faults.cut_watches()
    await eventually(lambda: r.w.status().errors >= 2, what="502 errors")
    assert "502" in r.w.status().last_error and "Bad Gateway" in r.w.status().last_error
    await kube.create(pod("a", "after", {}, "n1", "10.0.0.60"))
    await eventually(lambda: "a/after" in r.rec.state, what="recovery after 502")
    assert all(isinstance(c.value, parse.Pod | None) for c in r.rec.changes())
    assert r.w.status().relists == 0


async def test_silent_stream_is_detected_by_read_timeout(emu: Any, kube: Kube, pods: Any) -> None:
    """No bytes (not even a bookmark) for read_timeout: the stream is
    dropped and resumed; events after that still arrive."""
    await seed(kube, 1)
    r = pods(replace(FAST, read_timeout=0.3))
    await eventually(lambda: r.rec.listed == 1)
    import asyncio

    errors_before = r.w.status().errors
    emu.faults.stall(0.6)  # requests in the next 0.6s hang (the reconnects too), then are dropped
    await eventually(lambda: r.w.status().errors > errors_before, what="stall detected")
    await asyncio.sleep(0.7)  # our own create must not fall into the stall window
    await kube.create(pod("a", "late", {}, "n1", "10.0.0.61"))
    await eventually(lambda: "a/late" in r.rec.state, timeout=10, what="events after the stall")
    assert r.w.status().relists == 0
    assert (REGISTRY.get_sample_value("stockade_watch_errors_total", {"kind": "Pod", "reason": "stall"}) or 0) >= 1


async def test_bookmarks_advance_the_resource_version() -> None:
    """Changes of other kinds move the store's version; the Pod stream's
    bookmarks carry it, so a resume starts from a recent version."""
    import asyncio

    from stockade.kubeemu.emulator import KubeEmulator

    async with KubeEmulator(host="127.0.0.1", port=0, bookmark_interval=0.1) as emu2:
        from kubernetes_asyncio import client

        cfg = client.Configuration()
        cfg.host = emu2.url
        async with client.ApiClient(configuration=cfg) as c2:
            k2 = Kube(emu2.url)
            try:
                await k2.create(namespace("a"), pod("a", "p", {}, "n1", "10.0.0.1"))
                rec = Recorder()
                w = Watcher("Pod", api_call(c2, "Pod"), project_pod, rec, FAST)
                t = asyncio.create_task(w.run())
                try:
                    await eventually(lambda: rec.listed == 1 and w.status().connected)
                    listed_rv = int(w.resource_version)
                    await k2.create(namespace("b"), namespace("c"))
                    await eventually(lambda: int(w.resource_version) >= listed_rv + 2, what="bookmark")
                    assert len(rec.changes()) == 1  # only the pod; bookmarks are not events
                finally:
                    t.cancel()
                    await asyncio.gather(t, return_exceptions=True)
            finally:
                await k2.close()


async def test_delayed_responses_still_work(emu: Any, kube: Kube, pods: Any) -> None:
    emu.faults.delay(150)
    await seed(kube, 2)
    r = pods()
    await eventually(lambda: r.rec.listed == 1, what="list despite delay")
    await kube.create(pod("a", "slow", {}, "n1", "10.0.0.62"))
    await eventually(lambda: "a/slow" in r.rec.state)
    emu.faults.delay(0)
