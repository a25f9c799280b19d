"""Input generators for the fuzz targets: JSON-like trees and structured mutations.

What: :func:`trees` draws arbitrary JSON-like values (what ``json.loads``
can return, plus huge integers, lone surrogates, megabyte strings and very
deep nesting); :func:`mutated` takes a valid document and breaks it at one
or more drawn paths (wrong type at the field, None, huge int, unicode, deep
nesting, a deleted key, an unknown key, a duplicated entry); :func:`byte_mutations`
does the same to a file's bytes (truncation, invalid UTF-8, flipped bytes).

Why: every field of a policy, a pod or a case file is reached with every
kind of wrong value, while most of the document stays valid so the
parser gets past its first check.

What not: no assertions (``tests/fuzz/targets.py`` holds the properties).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

RECIPES = Path("/work/shared/cases/recipes")
SPEC_CASES = Path(__file__).resolve().parents[1] / "spec" / "cases"

# Field names the parsers know, so drawn trees hit real code paths.
KNOWN_KEYS = (
    "apiVersion", "kind", "metadata", "spec", "status", "name", "namespace", "labels", "podSelector",
    "namespaceSelector", "ipBlock", "cidr", "except", "ingress", "egress", "from", "to", "ports", "port",
    "endPort", "protocol", "policyTypes", "matchLabels", "matchExpressions", "key", "operator", "values",
    "containers", "initContainers", "containerPort", "restartPolicy", "hostNetwork", "nodeName", "podIP",
    "podIPs", "ip", "phase", "addresses", "address", "type", "podCIDR", "podCIDRs",
    # case files
    "nodes", "namespaces", "pods", "external", "policies", "probes", "steps", "actions", "expect", "node",
    "apply", "delete", "label-pod", "label-namespace", "create-pod", "delete-pod", "pod", "source", "notes",
)
KNOWN_STRINGS = (
    "NetworkPolicy", "networking.k8s.io/v1", "Ingress", "Egress", "TCP", "UDP", "SCTP", "In", "NotIn", "Exists",
    "DoesNotExist", "10.0.0.0/8", "::/0", "0.0.0.0/0", "1.2.3.4", "fd00::1", "Running", "InternalIP", "Always",
    "default", "x/a", "allow", "deny", "{{ip x/a}}/32", "{{prefix x/a 4}}", "{{ip external:nope}}", "http",
    "{{prefix x/a ²}}", "{{prefix x/a 99999999999999999999999}}", "{{bogus}}", "010.000.000.001/8",
)
HUGE_EXPONENTS = (31, 32, 63, 64, 100, 1330, 16610)  # 2**16610 has over 5,000 digits: str() of it raises
BIG_STRINGS = ("a" * 64, "a" * 254, "x" * 100_000, "é" * 70, "a/" * 200, "\udcff" * 3, "\x00\n\r\t\"\\")

_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(), st.builds(lambda e, neg: -(2**e) if neg else 2**e, st.sampled_from(HUGE_EXPONENTS), st.booleans()),
    st.floats(allow_nan=True, allow_infinity=True), _text, st.sampled_from(KNOWN_STRINGS),
    st.sampled_from(BIG_STRINGS),
)
keys: st.SearchStrategy[str] = st.one_of(st.sampled_from(KNOWN_KEYS), _text, st.sampled_from(BIG_STRINGS))


def nest(value: Any, depth: int, as_dict: bool) -> Any:
    """``value`` inside ``depth`` levels of lists (or ``{"a": ...}`` objects)."""
    for _ in range(depth):
        value = {"a": value} if as_dict else [value]
    return value


def trees(max_leaves: int = 25) -> st.SearchStrategy[Any]:
    """JSON-like values, sometimes nested thousands of levels deep."""
    base = st.recursive(
        scalars,
        lambda children: st.one_of(st.lists(children, max_size=5),
                                   st.dictionaries(keys, children, max_size=6)),
        max_leaves=max_leaves)
    deep = st.builds(nest, base, st.sampled_from((50, 200, 1000, 5000)), st.booleans())
    return st.one_of(base, base, base, deep)


def paths(doc: Any, max_len: int = 40) -> list[tuple[Any, ...]]:
    """Every path into ``doc`` (root included) of at most ``max_len`` steps, as key/index tuples."""
    out: list[tuple[Any, ...]] = [()]
    todo: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    while todo:
        v, p = todo.pop()
        if len(p) >= max_len:
            continue
        items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
        for k, x in items:
            out.append((*p, k))
            todo.append((x, (*p, k)))
    return out


def depth(doc: Any) -> int:
    """Nesting depth of ``doc`` (iterative)."""
    deepest = 0
    todo: list[tuple[Any, int]] = [(doc, 0)]
    while todo:
        v, d = todo.pop()
        deepest = max(deepest, d)
        if isinstance(v, dict):
            todo.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            todo.extend((x, d + 1) for x in v)
    return deepest


def depth_ok(doc: Any) -> bool:
    """Shallow enough for ``copy.deepcopy`` (which recurses)."""
    return depth(doc) < 200


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        doc = doc[k]
    return doc


Mutation = Callable[[Any, Any], Any]  # (old value, drawn garbage) -> new value; DELETE removes the field

DELETE = object()


def _to_string(old: Any) -> str:
    """The value as JSON text (a field that should be an object or a number, given as a string)."""
    if isinstance(old, str):
        return old * 3
    if depth(old) > 100:
        return "[" * 100
    try:
        return json.dumps(old)
    except ValueError:  # an int too long for str()
        return "9" * 100
OPS: dict[str, Mutation] = {
    "replace": lambda old, g: g,
    "none": lambda old, g: None,
    "delete": lambda old, g: DELETE,
    "wrap-list": lambda old, g: [old],
    "to-string": lambda old, g: _to_string(old),
    "huge-int": lambda old, g: 10**5000 if isinstance(g, bool) else 2**64,
    "deep": lambda old, g: nest(old, 3000, isinstance(g, bool) and g),
    "unknown-key": lambda old, g: {**old, "bogus\u2603": g} if isinstance(old, dict) else g,
    "duplicate": lambda old, g: [*old, *old] if isinstance(old, list) else old,
    "empty": lambda old, g: type(old)() if isinstance(old, list | dict | str) else 0,
    "unicode": lambda old, g: (old + "\u0430\u202e\udc80") if isinstance(old, str) else "\u0430",
    "megabyte": lambda old, g: "v" * 1_000_000,
}


def _shallow(v: Any) -> Any:
    return dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v


def apply_mutation(doc: Any, path: tuple[Any, ...], op: str, garbage: Any) -> Any:
    """``doc`` with the value at ``path`` mutated by ``op``; the containers
    along ``path`` are copied (iteratively: ``doc`` may be thousands of levels
    deep), everything else is shared with ``doc``, which is left unchanged."""
    if not path:
        new = OPS[op](_shallow(doc), garbage)
        return None if new is DELETE else new
    root = _shallow(doc)
    parent = root
    for k in path[:-1]:
        parent[k] = _shallow(parent[k])
        parent = parent[k]
    new = OPS[op](_shallow(parent[path[-1]]), garbage)
    if new is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return root


_GARBAGE = trees(8)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[Any], max_mutations: int = 3) -> tuple[Any, Any]:
    """(the valid document, the document broken at 1..max_mutations paths)."""
    doc = draw(base)
    out = doc
    for _ in range(draw(st.integers(1, max_mutations))):
        ps = paths(out)
        path = ps[draw(st.integers(0, len(ps) - 1))] if len(ps) > 1 else ()
        op = draw(st.sampled_from(sorted(OPS)))
        out = apply_mutation(out, path, op, draw(_GARBAGE))
    return doc, out


def recipe_docs() -> list[Any]:
    """The recipe cases and the spec cases, parsed."""
    files = sorted(RECIPES.glob("*.json")) + sorted(SPEC_CASES.glob("*.json"))
    return [json.loads(f.read_text()) for f in files]


def recipe_files() -> list[Path]:
    return sorted(RECIPES.glob("*.json")) + sorted(SPEC_CASES.glob("*.json"))


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    """A recipe file's bytes, truncated, spliced with random bytes, invalid
    UTF-8 or a flipped byte; or random bytes altogether."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=512))
    files = recipe_files()
    data = files[draw(st.integers(0, len(files) - 1))].read_bytes()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(("truncate", "insert", "flip", "bad-utf8", "bom", "nul")))
        if kind == "truncate":
            data = data[:i]
        elif kind == "insert":
            data = data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:]
        elif kind == "flip" and data:
            j = min(i, len(data) - 1)
            data = data[:j] + bytes([data[j] ^ draw(st.integers(1, 255))]) + data[j + 1:]
        elif kind == "bad-utf8":
            data = data[:i] + draw(st.sampled_from((b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"))) + data[i:]
        elif kind == "bom":
            data = b"\xef\xbb\xbf" + data
        else:
            data = data[:i] + b"\x00" + data[i:]
    return data
