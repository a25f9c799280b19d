"""Every field, every kind of wrong value: the exhaustive counterpart of the random mutations.

For the policies of the recipes and one spec case with steps, each path
of the document is broken with each mutation of ``tests/fuzz/gen.py``
(one at a time), and the fuzz property is checked: the parser raises only
``PolicyInvalid`` / ``ParseError`` with field paths, the case reader only
``CaseError`` naming the file (and ``stockade evaluate`` exits 2 naming it,
or runs the case with the oracle and the compiled path agreeing); the
parser's outcome is the same with its caches cold and warm.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fuzz import gen
from tests.fuzz.targets import check_case_file, check_parse_mutate, dump_json

GARBAGE: dict[str, Any] = {"replace": {"x": [1, None]}, "huge-int": True}  # the drawn value each op gets


def _policies() -> list[Any]:
    return [p for d in gen.recipe_docs() for p in d.get("policies", []) if "{{" not in json.dumps(p)]


@pytest.mark.parametrize("op", sorted(gen.OPS))
def test_every_field_of_every_recipe_policy(op: str) -> None:
    checked = 0
    for pol in _policies():
        for path in gen.paths(pol):
            broken = gen.apply_mutation(pol, path, op, GARBAGE.get(op))
            check_parse_mutate(("policy", pol, broken))
            checked += 1
    assert checked > 200


SPEC_CASE = gen.SPEC_CASES / "spec-lifecycle.json"  # steps with every action kind


@pytest.mark.parametrize("op", sorted(gen.OPS))
def test_every_field_of_a_case_file(op: str) -> None:
    """Through ``load_each`` and ``stockade evaluate`` (check_case_file)."""
    doc = json.loads(SPEC_CASE.read_text())
    checked = 0
    for path in gen.paths(doc):
        check_case_file(dump_json(gen.apply_mutation(doc, path, op, GARBAGE.get(op))))
        checked += 1
    assert checked > 100
