"""Inputs the fuzz targets broke controller/parse.py and stockade/cases.py with (fixed there).

Each was a crash (an exception other than PolicyInvalid / ParseError /
CaseError) or a wrong verdict before the fix; the message each now gets
is pinned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.parse import ParseError, PolicyInvalid, parse_pod, parse_policy
from stockade import cases


def _expr_policy(values: Any, op: str = "In") -> dict[str, Any]:
    expr: dict[str, Any] = {"key": "app", "operator": op}
    if values is not None:
        expr["values"] = values
    return {"metadata": {"name": "p", "namespace": "x"}, "spec": {"podSelector": {"matchExpressions": [expr]}}}


@pytest.mark.parametrize("valid, invalid, error", [
    pytest.param(["a", "b", "c"], "abc", "spec.podSelector.matchExpressions[0].values: must be a list, not str",
                 id="string-values"),
    pytest.param(None, "", "spec.podSelector.matchExpressions[0].values: must be a list, not str", id="empty-string"),
    pytest.param(None, 0, "spec.podSelector.matchExpressions[0].values: must be a list, not int", id="zero"),
])
def test_a_cached_valid_selector_does_not_hide_an_invalid_one(valid: Any, invalid: Any, error: str) -> None:
    """The selector cache keyed values with ``tuple(values or ())``: "abc" had the key of ["a", "b", "c"],
    and "" or 0 the key of no values, so after the valid one was cached the invalid one was accepted."""
    op = "In" if valid is not None else "Exists"
    parse_policy(_expr_policy(valid, op))
    with pytest.raises(PolicyInvalid) as ei:
        parse_policy(_expr_policy(invalid, op))
    assert error in ei.value.errors


def test_a_port_number_too_long_to_print_is_an_error_not_a_crash() -> None:
    """str() of an int over 4,300 digits raises ValueError; the message used f"{port}"."""
    obj = {"metadata": {"name": "p"}, "spec": {"ingress": [{"ports": [{"port": 10**5000, "endPort": -(10**5000)}]}]}}
    with pytest.raises(PolicyInvalid) as ei:
        parse_policy(obj)
    assert "spec.ingress[0].ports[0].port: <an integer of 16610 bits> must be between 1 and 65535, inclusive" \
        in ei.value.errors


def test_a_deeply_nested_value_is_an_error_not_a_crash() -> None:
    """repr() of a 100,000-deep list raises RecursionError; the message used {value!r}."""
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ParseError) as ei:
        parse_pod({"metadata": {"name": "a"}, "spec": {"hostNetwork": deep}})
    assert str(ei.value) == "spec.hostNetwork: must be a boolean, not [[[[...]]]]"


def _case(tmp_path: Path, cidr: str = "10.0.0.0/8", **extra: Any) -> Path:
    doc = {"name": "c", "namespaces": {"x": {"labels": {}}},
           "pods": [{"namespace": "x", "name": "a", "ports": [{"port": 80}]}],
           "policies": [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                         "metadata": {"name": "p", "namespace": "x"},
                         "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": cidr}}]}]}}],
           **extra}
    f = tmp_path / "c.json"
    f.write_text(json.dumps(doc, ensure_ascii=False))
    return f


@pytest.mark.parametrize("n", [pytest.param("²", id="superscript-digit"), pytest.param("9" * 5000, id="5000-digits")])
def test_a_template_prefix_length_that_is_not_a_small_ascii_number_is_a_case_error(tmp_path: Path, n: str) -> None:
    """str.isdigit() accepts '²' and int('²') raises ValueError; int() of 5,000 digits raises too."""
    (e,) = cases.load_each([_case(tmp_path, cidr="{{prefix x/a " + n + "}}")])
    assert isinstance(e, cases.CaseError)
    assert e.field == "policies[0].spec.ingress[0].from[0].ipBlock.cidr"
    assert "prefix length must be 0..32" in e.message and len(e.message) < 300


def test_an_integer_too_long_for_the_json_parser_is_a_case_error(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text('{"name": "c", "nodes": ' + "9" * 5000 + "}")
    (e,) = cases.load_each([f])
    assert isinstance(e, cases.CaseError) and e.field == "" and e.message.startswith("not usable JSON: ValueError")


def test_an_oversized_integer_field_is_named_shortly(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text('{"name": "c", "nodes": ' + "9" * 4000 + "}")
    (e,) = cases.load_each([f])
    assert isinstance(e, cases.CaseError) and e.field == "nodes"
    assert e.message.startswith("<an integer of") and e.message.endswith(f"is not between 1 and {cases.MAX_NODES}")


def test_an_applied_namespace_name_must_be_a_dns_label(tmp_path: Path) -> None:
    steps = [{"name": "s", "actions": [{"apply": {"kind": "Namespace", "metadata": {"name": "Not Valid"}}}]}]
    (e,) = cases.load_each([_case(tmp_path, steps=steps)])
    assert isinstance(e, cases.CaseError) and e.field == "steps[0].actions[0].apply.metadata.name"
