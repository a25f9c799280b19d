"""Field checks of a case document: each raises ``_FieldError`` with the field path.

What: shape checks (object, list, string, integer in range, no unknown
fields) and the Kubernetes rules a real API server would apply to what a
case declares (label keys and values, RFC 1123 names, IANA port names,
protocols), and the readers of the repeated parts: pods, probes, actions.

Why its own module: the loader (``case_format.parse_case``) and the world
(``case_world.World``, for ``apply``/``create-pod``/``label-*`` actions)
check the same fields the same way, so the lab and ``stockade evaluate``
cannot part ways on what a case means.

What not: no file reading and no cross-references (is the namespace
declared, does the pod exist): those are the world's; no policy
validation (that is ``controller.parse``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from stockade.case_errors import _FieldError, _show
from stockade.case_values import ACTION_KINDS, PROTOCOLS, Action, PodDecl, PortDecl, Probe


def _obj(v: Any, f: str, required: bool = False) -> dict[str, Any]:
    if v is None and not required:
        return {}
    if not isinstance(v, dict):
        raise _FieldError(f, "required" if v is None else f"must be an object, not {type(v).__name__}")
    return v


def _lst(v: Any, f: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise _FieldError(f, f"must be a list, not {type(v).__name__}")
    return v


def _str(v: Any, f: str, required: bool = True) -> str:
    if v is None and not required:
        return ""
    if not isinstance(v, str) or (required and not v):
        raise _FieldError(f, "required" if v in (None, "") else f"must be a string, not {type(v).__name__}")
    return v


def _int(v: Any, f: str, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise _FieldError(f, f"must be an integer, not {_show(v)}")
    if not lo <= v <= hi:
        raise _FieldError(f, f"{_show(v)} is not between {lo} and {hi}")
    return v


def _known(d: dict[str, Any], f: str, allowed: Iterable[str]) -> None:
    extra = sorted(set(d) - set(allowed))
    if extra:
        raise _FieldError(f"{f}.{extra[0]}" if f else extra[0], "unknown field")


_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?")


def _label_key_ok(k: str) -> bool:
    prefix, slash, name = k.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or _DNS_SUBDOMAIN.fullmatch(prefix) is None):
        return False
    return _LABEL_NAME.fullmatch(name) is not None


def _labels(v: Any, f: str) -> dict[str, str]:
    """Labels as Kubernetes accepts them (a real API server would refuse
    anything else, so the lab and evaluate would part ways)."""
    d = _obj(v, f)
    for k, val in d.items():
        if not isinstance(val, str):
            raise _FieldError(f"{f}.{k}", f"label value must be a string, not {type(val).__name__}")
        if not _label_key_ok(k):
            raise _FieldError(f"{f}.{k}", f"{_show(k)} is not a valid label key")
        if val and _LABEL_NAME.fullmatch(val) is None:
            raise _FieldError(f"{f}.{k}", f"{_show(val)} is not a valid label value")
    return dict(d)


def _name(v: Any, f: str, label: bool) -> str:
    s = _str(v, f)
    if len(s) > (63 if label else 253) or (_DNS_LABEL if label else _DNS_SUBDOMAIN).fullmatch(s) is None:
        kind = "an RFC 1123 label" if label else "an RFC 1123 subdomain"
        raise _FieldError(f, f"{_show(s)} is not {kind} (lowercase a-z, 0-9, '-'{'' if label else ' and .'})")
    return s


def _protocol(v: Any, f: str) -> str:
    if v is None:
        return "TCP"
    if v not in PROTOCOLS:
        raise _FieldError(f, f"{_show(v)} is not TCP, UDP or SCTP")
    return str(v)


def _ports(v: Any, f: str) -> tuple[PortDecl, ...]:
    out: list[PortDecl] = []
    for i, p in enumerate(_lst(v, f)):
        pf = f"{f}[{i}]"
        d = _obj(p, pf, required=True)
        _known(d, pf, ("port", "protocol", "name"))
        decl = PortDecl(_int(d.get("port"), f"{pf}.port", 1, 65535), _protocol(d.get("protocol"), f"{pf}.protocol"),
                        _str(d.get("name"), f"{pf}.name", required=False))
        if decl.name and (_PORT_NAME.fullmatch(decl.name) is None or "--" in decl.name
                          or not any("a" <= c <= "z" for c in decl.name)):
            raise _FieldError(f"{pf}.name", f"{_show(decl.name)} is not a port name (IANA_SVC_NAME: at most 15 of "
                                            "a-z, 0-9, '-', with a letter, no '--')")
        if decl.name and any(o.name == decl.name for o in out):
            raise _FieldError(f"{pf}.name", f"duplicate port name {_show(decl.name)}")
        if any((o.port, o.protocol) == (decl.port, decl.protocol) for o in out):
            raise _FieldError(f"{pf}.port", f"duplicate port {decl.port}/{decl.protocol}")
        out.append(decl)
    return tuple(out)


def _pod(v: Any, f: str, nodes: int) -> PodDecl:
    d = _obj(v, f, required=True)
    _known(d, f, ("namespace", "name", "labels", "ports", "node", "hostNetwork"))
    node = d.get("node")
    hn = d.get("hostNetwork", False)
    if not isinstance(hn, bool):
        raise _FieldError(f"{f}.hostNetwork", f"must be true or false, not {_show(hn)}")
    return PodDecl(_name(d.get("namespace"), f"{f}.namespace", True), _name(d.get("name"), f"{f}.name", False),
                   _labels(d.get("labels"), f"{f}.labels"), _ports(d.get("ports"), f"{f}.ports"),
                   None if node is None else _int(node, f"{f}.node", 0, nodes - 1), hn)


def _probes(v: Any, f: str) -> tuple[Probe, ...]:
    out = []
    for i, p in enumerate(_lst(v, f)):
        pf = f"{f}[{i}]"
        d = _obj(p, pf, required=True)
        _known(d, pf, ("from", "to", "port", "protocol", "expect"))
        expect = d.get("expect")
        if expect not in ("allow", "deny"):
            raise _FieldError(f"{pf}.expect", f"must be 'allow' or 'deny', not {_show(expect)}")
        out.append(Probe(_str(d.get("from"), f"{pf}.from"), _str(d.get("to"), f"{pf}.to"),
                         _int(d.get("port"), f"{pf}.port", 1, 65535),
                         _protocol(d.get("protocol"), f"{pf}.protocol"), expect, pf))
    return tuple(out)


def _actions(v: Any, f: str) -> tuple[Action, ...]:
    out = []
    for i, a in enumerate(_lst(v, f)):
        af = f"{f}[{i}]"
        d = _obj(a, af, required=True)
        if len(d) != 1 or next(iter(d)) not in ACTION_KINDS:
            raise _FieldError(af, f"must have exactly one of {', '.join(ACTION_KINDS)}; got {_show(sorted(d))}")
        kind, body = next(iter(d.items()))
        out.append(Action(kind, body, f"{af}.{kind}"))
    return tuple(out)
