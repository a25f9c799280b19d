"""Label and field selectors: the string grammar, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from stockade.kubeemu.errors import ApiError
from stockade.kubeemu.selectors import field_value, parse_field_selector, parse_label_selector

OBJ: dict[str, Any] = {
    "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web", "tier": "fe", "v": "2"}},
    "spec": {"nodeName": "n1", "hostNetwork": True, "priority": 5},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        pytest.param("", True, id="empty-selects-all"),
        pytest.param("app=web", True, id="eq"),
        pytest.param("app==web", True, id="double-eq"),
        pytest.param("app!=web", False, id="neq"),
        pytest.param("missing!=x", True, id="neq-absent"),
        pytest.param("app=web,tier=fe", True, id="and"),
        pytest.param("app=web,tier=be", False, id="and-fails"),
        pytest.param("app in (web, db)", True, id="in"),
        pytest.param("app notin (web,db)", False, id="notin"),
        pytest.param("missing notin (a)", True, id="notin-absent"),
        pytest.param("tier", True, id="exists"),
        pytest.param("!tier", False, id="not-exists"),
        pytest.param("!missing,app in (web),v=2", True, id="mixed"),
        pytest.param("example.com/role", False, id="prefixed-key"),
    ],
)
def test_label_selector(selector: str, matches: bool) -> None:
    assert parse_label_selector(selector)(OBJ) is matches


@pytest.mark.parametrize("selector", [
    pytest.param("app in ()", id="empty-set"),
    pytest.param("app=(x)", id="parenthesis-value"),
    pytest.param("=x", id="no-key"),
    pytest.param("a b", id="garbage"),
])
def test_bad_label_selector_is_400(selector: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_label_selector(selector)
    assert info.value.code == 400 and info.value.reason == "BadRequest"


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        pytest.param("metadata.name=web-1", True, id="name"),
        pytest.param("metadata.namespace==shop", True, id="namespace"),
        pytest.param("spec.nodeName=n2", False, id="node-differs"),
        pytest.param("spec.nodeName!=n2,status.phase=Running", True, id="and"),
        pytest.param("spec.missing=", True, id="absent-is-empty"),
        pytest.param("spec.hostNetwork=true", True, id="bool"),
    ],
)
def test_field_selector(selector: str, matches: bool) -> None:
    assert parse_field_selector(selector)(OBJ) is matches


def test_field_value_and_bad_field_selector() -> None:
    assert field_value(OBJ, "spec.priority") == "5"
    assert field_value(OBJ, "metadata.labels") is None
    with pytest.raises(ApiError) as info:
        parse_field_selector("metadata.name")
    assert info.value.code == 400 and "metadata.name" in info.value.message
