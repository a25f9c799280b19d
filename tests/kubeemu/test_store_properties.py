"""Properties of the history window over random write sequences (hypothesis).

For every version still in the window: an exact list rebuilds the state
recorded at that version, and replaying events_since(version) onto that
state gives the current state, which is what a resumed watch relies on.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.kubeemu.errors import ApiError
from stockade.kubeemu.store import Store

NAMES = ["a", "b", "c"]
OPS = st.lists(st.tuples(st.sampled_from(["create", "label", "delete"]), st.sampled_from(["pods", "configmaps"]),
                         st.sampled_from(NAMES), st.integers(0, 3)), max_size=40)


def state(store: Store, resource: str) -> dict[str, dict[str, Any]]:
    items, _ = store.list(resource, "default")
    return {obj["metadata"]["name"]: obj for obj in items}


@settings(max_examples=60, deadline=None)
@given(ops=OPS, history=st.integers(1, 15))
def test_window_rebuilds_and_replays(ops: list[tuple[str, str, str, int]], history: int) -> None:
    store = Store(history=history, rng=random.Random(0), initial_namespaces=["default"])
    snapshots: dict[int, dict[str, dict[str, dict[str, Any]]]] = {}
    snapshots[store.resource_version] = {r: state(store, r) for r in ("pods", "configmaps")}
    for op, resource, name, value in ops:
        try:
            if op == "create":
                store.create(resource, {"metadata": {"name": name, "labels": {"v": str(value)}}}, "default")
            elif op == "label":
                store.patch(resource, name, lambda o, v=value: {**o, "metadata": {**o["metadata"],
                                                                                   "labels": {"v": str(v)}}}, "default")
            else:
                store.delete(resource, name, "default")
        except ApiError as exc:
            assert exc.code in (404, 409)
        snapshots[store.resource_version] = {r: state(store, r) for r in ("pods", "configmaps")}
    current = snapshots[store.resource_version]
    for rv, snapshot in snapshots.items():
        if rv < store.floor:
            continue
        for resource in ("pods", "configmaps"):
            items, list_rv = store.list(resource, "default", rv=rv, exact=True)
            assert list_rv == rv
            assert {o["metadata"]["name"]: o for o in items} == snapshot[resource]
            replayed = dict(snapshot[resource])
            for event in store.events_since(rv):
                if event.key[1] != resource:
                    continue
                if event.type == "DELETED":
                    del replayed[event.name]
                else:
                    replayed[event.name] = event.obj
            assert replayed == current[resource]
