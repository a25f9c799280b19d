"""Reading case files: :func:`load` / :func:`load_each` / :func:`parse_case`.

What: read case files (a folder means its ``*.json``, sorted) into
:class:`~stockade.case_values.Case` values, checking every field and
running the whole case through :func:`~stockade.case_world.stages`
(references, templates, addresses); an unusable file raises (or, from
:func:`load_each`, yields) a :class:`CaseError` naming the file and the field.

Why its own module: inputs that must not break anything
(docs/reliability.md) enter here: a file over MAX_CASE_BYTES is refused
before it is read, JSON nested deeper than MAX_NESTING is refused before
any recursive step, so every bad file ends as a :class:`CaseError`, never
another exception.

What not: no per-field rules (``case_fields``), no objects or stages
(``case_world``); users import from ``stockade.cases``.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from stockade.case_addresses import POD_NET
from stockade.case_errors import MAX_ECHO, CaseError, _cut, _FieldError, _show
from stockade.case_fields import _actions, _int, _known, _labels, _lst, _name, _obj, _pod, _ports, _probes, _str
from stockade.case_values import Case, External, Step
from stockade.case_world import stages

MAX_NODES = 200

MAX_CASE_BYTES = 8 << 20
"""Largest case file read (8 MiB).  The recipes are 1-6 KiB and a case is
written by hand; a bigger file is refused with a :class:`CaseError` from its
size alone, before any of it is read (and a file that grows past the limit
while being read, or a device, is cut off at MAX_CASE_BYTES + 1 bytes)."""

MAX_NESTING = 64
"""Deepest JSON nesting accepted in a case file.  A case is at most about
12 levels deep (a policy's ``matchExpressions`` values); deeper documents
are refused with the path of the first too-deep value, so no recursive step
(template expansion, copies) ever meets Python's recursion limit."""



def parse_case(doc: Any, file: str = "<case>") -> Case:
    """A case document -> :class:`Case`; checks every field and runs the
    whole case through :func:`stages` (references, templates, addresses)."""
    try:
        d = _obj(doc, "", required=True)
        _known(d, "", ("name", "source", "notes", "nodes", "namespaces", "pods", "external",
                       "policies", "probes", "steps"))
        nodes = 2 if d.get("nodes") is None else _int(d.get("nodes"), "nodes", 1, MAX_NODES)
        namespaces = {}
        for name, spec in _obj(d.get("namespaces"), "namespaces").items():
            nf = f"namespaces.{name}"
            _name(name, nf, True)
            sd = _obj(spec, nf)
            _known(sd, nf, ("labels",))
            namespaces[name] = _labels(sd.get("labels"), f"{nf}.labels")
        pods = tuple(_pod(p, f"pods[{i}]", nodes) for i, p in enumerate(_lst(d.get("pods"), "pods")))
        ext = []
        for i, e in enumerate(_lst(d.get("external"), "external")):
            ef = f"external[{i}]"
            ed = _obj(e, ef, required=True)
            _known(ed, ef, ("name", "ip", "ports"))
            raw_ip = _str(ed.get("ip"), f"{ef}.ip")
            try:
                ip = ipaddress.ip_address(raw_ip)
            except ValueError:
                raise _FieldError(f"{ef}.ip", f"{_show(raw_ip)} is not an IP address") from None
            if ip in POD_NET:
                raise _FieldError(f"{ef}.ip", f"{ip} is inside {POD_NET}, reserved for nodes and pods")
            ext.append(External(_str(ed.get("name"), f"{ef}.name"), str(ip), _ports(ed.get("ports"), f"{ef}.ports")))
        policies = []
        for i, p in enumerate(_lst(d.get("policies"), "policies")):
            policies.append(_obj(p, f"policies[{i}]", required=True))
        steps = []
        for i, s in enumerate(_lst(d.get("steps"), "steps")):
            sf = f"steps[{i}]"
            sd = _obj(s, sf, required=True)
            _known(sd, sf, ("name", "actions", "probes"))
            steps.append(Step(_str(sd.get("name"), f"{sf}.name"), _actions(sd.get("actions"), f"{sf}.actions"),
                              _probes(sd.get("probes"), f"{sf}.probes")))
        case = Case(file, _str(d.get("name"), "name"), nodes, namespaces, pods, tuple(ext), tuple(policies),
                    _probes(d.get("probes"), "probes"), tuple(steps),
                    _str(d.get("source"), "source", required=False), _str(d.get("notes"), "notes", required=False))
        stages(case)  # references, templates and addresses, before anything runs
        return case
    except _FieldError as e:
        raise CaseError(file, e.field, e.message) from None


def case_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files in argument order; a folder contributes its ``*.json`` sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(p.glob("*.json")) if p.is_dir() else [p])
    return out


def _too_deep(doc: Any) -> str | None:
    """The path of the first value nested deeper than MAX_NESTING, or None
    (iterative: the check itself never recurses)."""
    todo: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while todo:
        v, path, depth = todo.pop()
        if depth > MAX_NESTING:
            return path or "<file>"
        if isinstance(v, dict):
            todo.extend((x, f"{path}.{k}" if path else str(k), depth + 1) for k, x in v.items())
        elif isinstance(v, list):
            todo.extend((x, f"{path}[{i}]", depth + 1) for i, x in enumerate(v))
    return None


def _read(p: Path) -> str:
    """The file's text, refusing more than MAX_CASE_BYTES before reading it."""
    name = str(p)
    try:
        with p.open("rb") as fh:
            st = os.fstat(fh.fileno())
            if st.st_size > MAX_CASE_BYTES:
                raise CaseError(name, "", f"file of {st.st_size} bytes is larger than the "
                                          f"{MAX_CASE_BYTES}-byte limit for case files")
            data = fh.read(MAX_CASE_BYTES + 1)
    except OSError as e:
        raise CaseError(name, "", e.strerror or str(e)) from None
    if len(data) > MAX_CASE_BYTES:
        raise CaseError(name, "", f"more than the {MAX_CASE_BYTES}-byte limit for case files")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CaseError(name, "", f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_file(path: str | Path) -> Case:
    p = Path(path)
    text = _read(p)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise CaseError(str(p), "", f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (RecursionError, ValueError) as e:  # nesting past the parser's own limit; an integer of > 4,300 digits
        raise CaseError(str(p), "", f"not usable JSON: {type(e).__name__}: {_cut(str(e), MAX_ECHO)}") from None
    deep = _too_deep(doc)
    if deep is not None:
        raise CaseError(str(p), deep, f"nested more than {MAX_NESTING} levels deep")
    return parse_case(doc, str(p))


def load_each(paths: Iterable[str | Path]) -> list[Case | CaseError]:
    """Every case, or the error that makes its file unusable (in order)."""
    out: list[Case | CaseError] = []
    for p in map(Path, paths):
        files = case_files([p])
        if p.is_dir() and not files:
            out.append(CaseError(str(p), "", "folder holds no *.json case files"))
        for f in files:
            try:
                out.append(load_file(f))
            except CaseError as e:
                out.append(e)
    return out


def load(paths: Iterable[str | Path]) -> list[Case]:
    """Every case; raises the first :class:`CaseError`."""
    cases = []
    for c in load_each(paths):
        if isinstance(c, CaseError):
            raise c
        cases.append(c)
    return cases
