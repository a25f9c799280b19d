"""Label selectors: validation (``ValidateLabelSelector``) and normal form.

What: ``_selector`` turns the raw ``matchLabels``/``matchExpressions`` of
a policy's pod or namespace selector into a :class:`LabelSelector`,
recording every problem with its field path in the policy's ``_Errors``.
Normal form: ``matchLabels: null``, ``{}`` or absent (and no expressions)
is the select-all selector; labels and requirements are sorted and values
deduplicated, so equal meaning gives equal (and shared) records.

Why its own module: selectors are the part of a policy the compiler keys
its shared sets on, and the hot path of the benchmark (75,000 policies):
valid selectors are interned by a cheap key of their raw form
(``_SELECTORS``, at most _INTERN_LIMIT entries, then cleared).

What not: no policy structure (peers, rules: ``parse_policy``) and no
label *maps* of pods or namespaces (``parse_objects``).
"""

from __future__ import annotations

from typing import Any

from controller.model import OPERATORS, SELECT_ALL, LabelSelector, Operator, Requirement
from controller.parse_errors import _Errors, _key, _show
from controller.parse_limits import _INTERN_LIMIT
from controller.parse_text import _label_key_problem, _label_value_problem

_SELECTORS: dict[object, LabelSelector] = {}
_SELECTOR = frozenset({"matchLabels", "matchExpressions"})
_REQUIREMENT = frozenset({"key", "operator", "values"})
_OPERATORS: dict[str, Operator] = {o: o for o in OPERATORS}


def _selector_cache_key(raw: dict[str, Any]) -> object:
    ml = raw.get("matchLabels")
    me = raw.get("matchExpressions")
    if not _SELECTOR.issuperset(raw) or (ml is not None and not isinstance(ml, dict)) \
            or (me is not None and not isinstance(me, list)):
        return None
    try:
        # values must be a list (or absent) to be cached: "abc", "" or 0 would
        # otherwise share the key of ["a", "b", "c"] or of no values at all
        exprs = tuple((e["key"], e["operator"], tuple(e.get("values") or ())) for e in me or ()
                      if isinstance(e, dict) and _REQUIREMENT.issuperset(e)
                      and (e.get("values") is None or isinstance(e.get("values"), list)))
        if me and len(exprs) != len(me):
            return None
        key = (tuple(ml.items()) if ml else (), exprs)
        hash(key)
        return key
    except (TypeError, KeyError, AttributeError):
        return None


def _selector(raw: Any, path: str, errs: _Errors) -> LabelSelector:
    """Validate and normalise a label selector (``ValidateLabelSelector``)."""
    d = errs.obj(raw, path)
    if not d:
        return SELECT_ALL
    ck = _selector_cache_key(d)
    if ck is not None:
        hit = _SELECTORS.get(ck)
        if hit is not None:
            return hit
    before = errs.count
    errs.known(d, path, _SELECTOR)
    labels: list[tuple[str, str]] = []
    ml = errs.obj(d.get("matchLabels"), f"{path}.matchLabels") or {}
    for k, v in ml.items():
        p = f"{path}.matchLabels[{_key(k)}]"
        prob = _label_key_problem(k)
        if prob:
            errs.add(p, f"invalid label key {_show(k)}: {prob}")
        if not isinstance(v, str):
            errs.add(p, f"label value must be a string, not {type(v).__name__}")
            continue
        prob = _label_value_problem(v)
        if prob:
            errs.add(p, f"invalid label value {_show(v)}: {prob}")
        labels.append((k, v))
    reqs: set[Requirement] = set()
    for i, e in enumerate(errs.lst(d.get("matchExpressions"), f"{path}.matchExpressions")):
        ep = f"{path}.matchExpressions[{i}]"
        e = errs.obj(e, ep)
        if e is None:
            errs.add(ep, "required")
            continue
        errs.known(e, ep, _REQUIREMENT)
        key = e.get("key")
        op = e.get("operator")
        values = errs.lst(e.get("values"), f"{ep}.values")
        ok = True
        if op in ("In", "NotIn"):
            if not values:
                errs.add(f"{ep}.values", f"must be specified when operator is {_show(op)}")
                ok = False
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.add(f"{ep}.values", f"may not be specified when operator is {_show(op)}")
                ok = False
        else:
            errs.add(f"{ep}.operator", f"{_show(op)} is not a valid selector operator (In, NotIn, Exists, DoesNotExist)")
            ok = False
        if not isinstance(key, str) or not key:
            errs.add(f"{ep}.key", "required" if not key else f"must be a string, not {type(key).__name__}")
            ok = False
        else:
            prob = _label_key_problem(key)
            if prob:
                errs.add(f"{ep}.key", f"invalid label key {_show(key)}: {prob}")
                ok = False
        for vi, v in enumerate(values):
            if not isinstance(v, str):
                errs.add(f"{ep}.values[{vi}]", f"must be a string, not {type(v).__name__}")
                ok = False
                continue
            prob = _label_value_problem(v)
            if prob:
                errs.add(f"{ep}.values[{vi}]", f"invalid label value {_show(v)}: {prob}")
                ok = False
        if ok and isinstance(key, str) and op in _OPERATORS:
            reqs.add(Requirement(key, _OPERATORS[op], tuple(sorted(set(values)))))
    sel = LabelSelector(tuple(sorted(labels)), tuple(sorted(reqs, key=lambda r: (r.key, r.operator, r.values))))
    if sel.is_empty:
        sel = SELECT_ALL
    if ck is not None and errs.count == before:
        if len(_SELECTORS) >= _INTERN_LIMIT:
            _SELECTORS.clear()
        _SELECTORS[ck] = sel
    return sel

