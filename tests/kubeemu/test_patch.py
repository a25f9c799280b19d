"""Patch formats: merge (RFC 7386), strategic merge with kubectl's directives, JSON patch (RFC 6902)."""

from __future__ import annotations

from typing import Any

import pytest

from stockade.kubeemu.errors import ApiError
from stockade.kubeemu.patch import json_patch, merge_patch, strategic_merge_patch


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        pytest.param({"a": "b"}, {"a": "c"}, {"a": "c"}, id="replace-scalar"),
        pytest.param({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}, id="add"),
        pytest.param({"a": "b"}, {"a": None}, {}, id="null-deletes"),
        pytest.param({"a": {"b": "c", "d": 1}}, {"a": {"b": None}}, {"a": {"d": 1}}, id="nested"),
        pytest.param({"a": [1, 2]}, {"a": [3]}, {"a": [3]}, id="lists-replace"),
        pytest.param({"a": "x"}, {"a": {"b": None, "c": 1}}, {"a": {"c": 1}}, id="scalar-to-object"),
    ],
)
def test_merge_patch(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


POD = {"spec": {"containers": [
    {"name": "a", "image": "x:1", "ports": [{"containerPort": 80}], "env": [{"name": "E", "value": "1"}]},
    {"name": "b", "image": "y:1"},
]}, "metadata": {"finalizers": ["f1"]}}


@pytest.mark.parametrize(
    ("patch", "result"),
    [
        pytest.param({"spec": {"containers": [{"name": "a", "image": "x:2"}]}},
                     {"containers": [{"name": "a", "image": "x:2", "ports": [{"containerPort": 80}],
                                      "env": [{"name": "E", "value": "1"}]}, {"name": "b", "image": "y:1"}]},
                     id="merge-by-name-keeps-other-fields-and-items"),
        pytest.param({"spec": {"containers": [{"name": "b", "$patch": "delete"}]}},
                     {"containers": [POD["spec"]["containers"][0]]}, id="delete-item"),
        pytest.param({"spec": {"containers": [{"name": "c", "image": "z"}, {"$patch": "replace"}]}},
                     {"containers": [{"name": "c", "image": "z"}]}, id="replace-list"),
        pytest.param({"spec": {"$patch": "replace", "containers": []}}, {"containers": []}, id="replace-map"),
        pytest.param({"spec": {"containers": [{"name": "a", "env": None}]}},
                     {"containers": [{"name": "a", "image": "x:1", "ports": [{"containerPort": 80}]},
                                     {"name": "b", "image": "y:1"}]}, id="null-in-item"),
        pytest.param({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                               "containers": [{"name": "b", "image": "y:2"}]}},
                     {"containers": [{"name": "b", "image": "y:2"}, POD["spec"]["containers"][0]]},
                     id="set-element-order"),
        pytest.param({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 443}]}]}},
                     {"containers": [{**POD["spec"]["containers"][0],
                                      "ports": [{"containerPort": 80}, {"containerPort": 443}]},
                                     POD["spec"]["containers"][1]]}, id="ports-by-containerPort"),
        pytest.param({"spec": {"$retainKeys": ["other"], "other": 1}}, {"other": 1}, id="retain-keys"),
    ],
)
def test_strategic_merge_patch(patch: Any, result: Any) -> None:
    assert strategic_merge_patch(POD, patch)["spec"] == result
    assert POD["spec"]["containers"][0]["image"] == "x:1"  # the target is not modified


@pytest.mark.parametrize(
    ("patch", "finalizers"),
    [
        pytest.param({"metadata": {"finalizers": ["f2"]}}, ["f1", "f2"], id="union"),
        pytest.param({"metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"]}}, [], id="delete-from-primitive"),
    ],
)
def test_strategic_primitive_lists(patch: Any, finalizers: list[str]) -> None:
    assert strategic_merge_patch(POD, patch)["metadata"]["finalizers"] == finalizers


def test_strategic_service_ports_merge_by_port_and_bad_directive() -> None:
    svc = {"spec": {"ports": [{"port": 80, "name": "http"}]}}
    out = strategic_merge_patch(svc, {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}})
    assert out["spec"]["ports"] == [{"port": 80, "name": "http", "targetPort": 8080}]
    with pytest.raises(ApiError):
        strategic_merge_patch(svc, {"spec": {"$patch": "explode"}})


DOC = {"metadata": {"labels": {"a": "1"}}, "items": [1, 2, 3]}


@pytest.mark.parametrize(
    ("ops", "result"),
    [
        pytest.param([{"op": "add", "path": "/metadata/labels/b", "value": "2"}],
                     {"metadata": {"labels": {"a": "1", "b": "2"}}, "items": [1, 2, 3]}, id="add"),
        pytest.param([{"op": "add", "path": "/items/-", "value": 4}],
                     {**DOC, "items": [1, 2, 3, 4]}, id="append"),
        pytest.param([{"op": "add", "path": "/items/0", "value": 0}], {**DOC, "items": [0, 1, 2, 3]}, id="insert"),
        pytest.param([{"op": "remove", "path": "/items/1"}], {**DOC, "items": [1, 3]}, id="remove"),
        pytest.param([{"op": "replace", "path": "/metadata/labels/a", "value": "9"}],
                     {**DOC, "metadata": {"labels": {"a": "9"}}}, id="replace"),
        pytest.param([{"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/z"}],
                     {**DOC, "metadata": {"labels": {"z": "1"}}}, id="move"),
        pytest.param([{"op": "copy", "from": "/items/0", "path": "/first"}], {**DOC, "first": 1}, id="copy"),
        pytest.param([{"op": "test", "path": "/items/2", "value": 3}], DOC, id="test-passes"),
        pytest.param([{"op": "add", "path": "/metadata/labels/a~1b", "value": "x"}],
                     {**DOC, "metadata": {"labels": {"a": "1", "a/b": "x"}}}, id="escaped-slash"),
    ],
)
def test_json_patch(ops: Any, result: Any) -> None:
    assert json_patch(DOC, ops) == result


@pytest.mark.parametrize("ops", [
    pytest.param([{"op": "test", "path": "/items/0", "value": 9}], id="test-fails"),
    pytest.param([{"op": "remove", "path": "/nope"}], id="remove-missing"),
    pytest.param([{"op": "replace", "path": "/items/7", "value": 1}], id="index-out-of-range"),
    pytest.param([{"op": "frobnicate", "path": "/a"}], id="unknown-op"),
    pytest.param([{"path": "/a"}], id="no-op"),
    pytest.param({"op": "add"}, id="not-a-list"),
])
def test_bad_json_patch(ops: Any) -> None:
    with pytest.raises(ApiError) as info:
        json_patch(DOC, ops)
    assert info.value.code in (400, 422)


def test_strategic_replace_paths_replace_whole_maps() -> None:
    pdb = {"spec": {"minAvailable": 1, "selector": {"matchLabels": {"a": "1"}}}}
    patch = {"spec": {"selector": {"matchLabels": {"b": "2"}}}}
    replaced = strategic_merge_patch(pdb, patch, frozenset({("spec", "selector")}))
    assert replaced["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {"b": "2"}}}
    assert strategic_merge_patch(pdb, patch)["spec"]["selector"] == {"matchLabels": {"a": "1", "b": "2"}}
