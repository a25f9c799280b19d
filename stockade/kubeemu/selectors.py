"""Label and field selectors in the string syntax of list and watch URLs.

``labelSelector`` supports the full apimachinery grammar: ``k=v``, ``k==v``,
``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k`` and ``!k``, joined by
commas.  ``fieldSelector`` supports ``path=v``, ``path==v`` and
``path!=v`` on any dotted path that names a scalar (``metadata.name``,
``metadata.namespace``, ``spec.nodeName``, ``status.phase`` ...); the real
server allows only a per-kind subset, the emulator is more lenient.

Parsing is separate from matching so that a bad selector is rejected with a
400 before a watch stream starts.  Not here: anything about storage.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from stockade.kubeemu.errors import bad_request

Matcher = Callable[[Mapping[str, Any]], bool]

_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^)]*)\)\s*$")
_EQ_RE = re.compile(rf"^\s*({_KEY})\s*(==|!=|=)\s*({_VALUE})\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [t for t in terms if t.strip()]


LabelTest = Callable[[Mapping[str, str]], bool]


def _label_term(term: str) -> LabelTest:
    if m := _SET_RE.match(term):
        key, op, raw = m.group(1), m.group(2), m.group(3)
        values = frozenset(v.strip() for v in raw.split(",") if v.strip())
        if not values:
            raise bad_request(f"unable to parse requirement: values for {key!r} {op} must be non-empty")
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if m := _EQ_RE.match(term):
        key, op, value = m.group(1), m.group(2), m.group(3)
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if m := _EXISTS_RE.match(term):
        negate, key = m.group(1) == "!", m.group(2)
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f"unable to parse requirement: found invalid label selector term {term.strip()!r}")


def parse_label_selector(text: str | None) -> Matcher:
    """Matcher over a whole object (reads metadata.labels); empty selects all."""
    tests = [_label_term(t) for t in _split_terms(text or "")]

    def match(obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(test(labels) for test in tests)

    return match


def field_value(obj: Mapping[str, Any], path: str) -> str | None:
    """The scalar at a dotted path, as the string the apiserver compares; None if absent."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, (str, int, float)):
        return str(cur)
    return None


def parse_field_selector(text: str | None) -> Matcher:
    """Matcher for ``fieldSelector``; an absent field compares as the empty string."""
    tests: list[tuple[str, bool, str]] = []
    for term in _split_terms(text or ""):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*?)\s*$", term)
        if m is None:
            raise bad_request(f"invalid field selector: {term.strip()!r}: expected path=value, path==value or path!=value")
        tests.append((m.group(1), m.group(2) == "!=", m.group(3)))

    def match(obj: Mapping[str, Any]) -> bool:
        for path, negate, value in tests:
            actual = field_value(obj, path) or ""
            if (actual == value) == negate:
                return False
        return True

    return match


def both(a: Matcher, b: Matcher) -> Matcher:
    return lambda obj: a(obj) and b(obj)
