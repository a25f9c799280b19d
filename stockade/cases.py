"""Policy cases: the file format, the address plan, and the result document.

What: everything both case runners (``stockade evaluate`` and ``stockade
lab run``) share, exactly as ``shared/cases/FORMAT.md`` (version 1) defines
it:

* :func:`load` / :func:`load_each` read case files (a folder means its
  ``*.json``, sorted) into :class:`Case` values, checking every field; an
  unusable file raises :class:`CaseError` naming the file and the field.
* :func:`plan_addresses` pins the address plan both runners use (below);
  :class:`AddressPlan` also allocates incrementally for steps.
* :func:`substitute` expands ``{{ip NS/POD}}``, ``{{ip external:NAME}}`` and
  ``{{prefix NS/POD N}}`` with any address lookup.
* :class:`World` turns the case and each step action into Kubernetes object
  operations (:class:`ObjectOp`: kind, namespace, name, new object or
  deletion); :func:`stages` lays out a whole run up front, so every error
  surfaces before anything runs.
* :func:`result_document` / :func:`write_result` write the result schema.

Inputs that must not break anything (docs/reliability.md): a file over
MAX_CASE_BYTES is refused before it is read, JSON nested deeper than
MAX_NESTING is refused before any recursive step, and error messages quote
offending values cut to MAX_ECHO characters, so every bad file ends as a
:class:`CaseError` naming the file and the field, never another exception.

The address plan (the lab relies on it; do not change it casually):

* node ``i`` (0-based) is named ``node-i``, has underlay IP ``198.19.0.(i+1)``,
  pod CIDR ``198.18.i.0/24`` and bridge gateway ``198.18.i.1``;
* pods are numbered in case order (the ``pods`` list, then ``create-pod``
  actions in step order); pod number ``k`` without ``node`` goes to node
  ``k % nodes``;
* a pod gets the lowest free address ``198.18.<node>.2`` .. ``.254`` on its
  node (a deleted pod's address becomes free again); hostNetwork pods have
  their node's IP and take no pod address.

What not: no Kubernetes or network I/O, no policy validation (that is
``controller.parse``; an invalid policy is a legitimate case input).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import re
import reprlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

PROTOCOLS = ("TCP", "UDP", "SCTP")
ACTION_KINDS = ("apply", "delete", "label-pod", "label-namespace", "create-pod", "delete-pod")
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

MAX_ECHO = 80
"""Characters of an offending value quoted in an error message (longer
values are cut and their length given), so a huge value never comes back
in full."""

MAX_FIELD_TEXT = 300
"""Longest field path (and, x4, message) a :class:`CaseError` carries; map
keys come from the file and may be arbitrarily long."""
POD_NET = ipaddress.ip_network("198.18.0.0/15")
Expect = Literal["allow", "deny"]


class CaseError(ValueError):
    """An unusable case file: ``file``, the JSON ``field`` path, ``message``."""

    def __init__(self, file: str, field: str, message: str) -> None:
        field, message = _cut(field, MAX_FIELD_TEXT), _cut(message, 4 * MAX_FIELD_TEXT)
        super().__init__(f"{file}: {field or '<file>'}: {message}")
        self.file = file
        self.field = field
        self.message = message


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class _Repr(reprlib.Repr):
    """``repr`` bounded in depth, width and length; huge ints summarised
    (``str()`` of an int of over 4,300 digits raises ValueError)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 3, MAX_ECHO, MAX_ECHO, MAX_ECHO
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 8

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_REPR = _Repr()


def _show(v: Any) -> str:
    """A value for an error message: its ``repr``, cut to about MAX_ECHO characters."""
    if isinstance(v, str):
        return repr(v) if len(v) <= MAX_ECHO else f"{v[:MAX_ECHO]!r}... ({len(v)} characters)"
    try:
        return _REPR.repr(v)
    except (ValueError, RecursionError):
        return f"<{type(v).__name__}>"


class _FieldError(ValueError):
    """A problem at a field path, before the file name is known."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class PortDecl:
    port: int
    protocol: str = "TCP"
    name: str = ""


@dataclass(frozen=True, slots=True)
class PodDecl:
    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ports: tuple[PortDecl, ...] = ()
    node: int | None = None
    host_network: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class External:
    name: str
    ip: str
    ports: tuple[PortDecl, ...] = ()


@dataclass(frozen=True, slots=True)
class Probe:
    """``src``/``dst`` are ``NS/POD`` or ``external:NAME`` (the file's
    ``from``/``to``); ``field`` is where the probe sits in the file."""

    src: str
    dst: str
    port: int
    protocol: str
    expect: Expect
    field: str = ""


@dataclass(frozen=True, slots=True)
class Action:
    kind: str  # one of ACTION_KINDS
    body: Any
    field: str = ""


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    actions: tuple[Action, ...] = ()
    probes: tuple[Probe, ...] = ()


@dataclass(frozen=True, slots=True)
class Case:
    file: str
    name: str
    nodes: int = 2
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict, hash=False)
    pods: tuple[PodDecl, ...] = ()
    external: tuple[External, ...] = ()
    policies: tuple[Any, ...] = ()
    probes: tuple[Probe, ...] = ()
    steps: tuple[Step, ...] = ()
    source: str = ""
    notes: str = ""


# --------------------------------------------------------------------------
# Field checks


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


# --------------------------------------------------------------------------
# Templates

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}")


def _expand(text: str, lookup: Callable[[str], str], f: str) -> str:
    def one(m: re.Match[str]) -> str:
        words = m.group(1).split()
        if len(words) == 2 and words[0] == "ip":
            return _look(lookup, words[1], f)
        if len(words) == 3 and words[0] == "prefix":
            ip = ipaddress.ip_address(_look(lookup, words[1], f))
            if not (words[2].isascii() and words[2].isdigit() and len(words[2]) <= 3) \
                    or int(words[2]) > ip.max_prefixlen:
                raise _FieldError(f, f"{_cut(m.group(0), MAX_ECHO)}: prefix length must be 0..{ip.max_prefixlen}")
            return str(ipaddress.ip_network(f"{ip}/{int(words[2])}", strict=False))
        raise _FieldError(f, f"{_cut(m.group(0), MAX_ECHO)} is not a template ({{{{ip REF}}}} or {{{{prefix REF N}}}})")

    if "{{" not in text:
        return text
    return _TEMPLATE.sub(one, text)


def _look(lookup: Callable[[str], str], ref: str, f: str) -> str:
    try:
        return lookup(ref)
    except KeyError:
        raise _FieldError(f, f"template refers to {_show(ref)}, which does not exist at this point") from None


def substitute(value: Any, lookup: Callable[[str], str], path: str = "") -> Any:
    """``value`` (JSON) with every template in every string expanded;
    ``lookup(ref)`` returns the address of ``NS/POD`` or ``external:NAME``
    and raises KeyError for unknown refs.  Raises ValueError (with the
    field path) for unknown references or malformed templates."""
    if isinstance(value, str):
        return _expand(value, lookup, path)
    if isinstance(value, list):
        return [substitute(v, lookup, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: substitute(v, lookup, f"{path}.{k}" if path else k) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------
# The address plan


def node_name(i: int) -> str:
    return f"node-{i}"


def node_ip(i: int) -> str:
    return f"198.19.0.{i + 1}"


def pod_cidr(i: int) -> str:
    return f"198.18.{i}.0/24"


def gateway_ip(i: int) -> str:
    return f"198.18.{i}.1"


class AddressPlan:
    """Where every node, pod and outside host sits.  ``pod_ips`` and
    ``pod_nodes`` map ``NS/POD`` to its IP and node index; ``external``
    maps a host name to its IP; ``_used[i]`` holds the host numbers taken on
    node ``i``; ``ordinal`` counts pods placed so far (round-robin)."""

    def __init__(self, nodes: int, external: Iterable[External] = ()) -> None:
        self.nodes = nodes
        self.pod_ips: dict[str, str] = {}
        self.pod_nodes: dict[str, int] = {}
        self.external = {e.name: e.ip for e in external}
        self.ordinal = 0
        self._used: list[set[int]] = [set() for _ in range(nodes)]

    def add_pod(self, pod: PodDecl) -> str:
        """Place and address ``pod`` (the next in case order); its IP."""
        if pod.key in self.pod_ips:
            raise ValueError(f"pod {pod.key} already exists")
        node = pod.node if pod.node is not None else self.ordinal % self.nodes
        self.ordinal += 1
        if pod.host_network:
            ip = node_ip(node)
        else:
            free = next((h for h in range(2, 255) if h not in self._used[node]), None)
            if free is None:
                raise ValueError(f"node {node} has no free pod address left")
            self._used[node].add(free)
            ip = f"198.18.{node}.{free}"
        self.pod_ips[pod.key] = ip
        self.pod_nodes[pod.key] = node
        return ip

    def remove_pod(self, key: str) -> None:
        ip = self.pod_ips.pop(key)
        node = self.pod_nodes.pop(key)
        if ip != node_ip(node):
            self._used[node].discard(int(ip.rsplit(".", 1)[1]))

    def lookup(self, ref: str) -> str:
        """Address of ``NS/POD`` or ``external:NAME``; KeyError if unknown."""
        if ref.startswith("external:"):
            return self.external[ref[len("external:"):]]
        return self.pod_ips[ref]


def plan_addresses(case: Case) -> AddressPlan:
    """The plan for the case's top-level pods (steps extend it)."""
    plan = AddressPlan(case.nodes, case.external)
    for p in case.pods:
        plan.add_pod(p)
    return plan


# --------------------------------------------------------------------------
# Kubernetes objects


def namespace_object(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}}


def node_object(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node_name(i), "labels": {"kubernetes.io/hostname": node_name(i)}},
        "spec": {"podCIDR": pod_cidr(i), "podCIDRs": [pod_cidr(i)]},
        "status": {"addresses": [{"type": "InternalIP", "address": node_ip(i)},
                                 {"type": "Hostname", "address": node_name(i)}]},
    }


def pod_object(pod: PodDecl, ip: str, node: int) -> dict[str, Any]:
    ports = []
    for p in pod.ports:
        e: dict[str, Any] = {"containerPort": p.port, "protocol": p.protocol}
        if p.name:
            e["name"] = p.name
        if pod.host_network:
            e["hostPort"] = p.port
        ports.append(e)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": dict(pod.labels)},
        "spec": {"nodeName": node_name(node), "hostNetwork": pod.host_network,
                 "containers": [{"name": "main", "image": "stockade/probe", "ports": ports}]},
        "status": {"phase": "Running", "hostIP": node_ip(node), "hostIPs": [{"ip": node_ip(node)}],
                   "podIP": ip, "podIPs": [{"ip": ip}]},
    }


@dataclass(frozen=True, slots=True)
class ObjectOp:
    """Create-or-replace (``obj`` set) or delete (``obj`` None) one object.
    ``namespace`` is "" for cluster-scoped kinds."""

    kind: str  # Namespace, Node, Pod, NetworkPolicy
    namespace: str
    name: str
    obj: dict[str, Any] | None

    @property
    def is_delete(self) -> bool:
        return self.obj is None


@dataclass(frozen=True, slots=True)
class Stage:
    """``step`` None: the initial cluster and top-level probes."""

    step: str | None
    ops: tuple[ObjectOp, ...]
    probes: tuple[Probe, ...]


class World:
    """The case's objects as they evolve through the steps (no I/O).
    ``namespaces``: name -> labels; ``pods``: key -> PodDecl;
    ``policies``: keys of the policies present."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.plan = AddressPlan(case.nodes, case.external)
        self.namespaces: dict[str, dict[str, str]] = {}
        self.pods: dict[str, PodDecl] = {}
        self.policies: set[str] = set()
        self._externals = {e.name for e in case.external}

    def initial_ops(self) -> list[ObjectOp]:
        ops = [ObjectOp("Node", "", node_name(i), node_object(i)) for i in range(self.case.nodes)]
        for name, labels in self.case.namespaces.items():
            self.namespaces[name] = labels
            ops.append(ObjectOp("Namespace", "", name, namespace_object(name, labels)))
        seen: set[str] = set()
        for i, p in enumerate(self.case.pods):
            if p.key in seen:
                raise _FieldError(f"pods[{i}].name", f"duplicate pod {p.key}")
            seen.add(p.key)
        for i, p in enumerate(self.case.pods):
            ops.append(self._create_pod(p, f"pods[{i}]"))
        if len(self._externals) != len(self.case.external):
            raise _FieldError("external", "external host names must be unique")
        for i, pol in enumerate(self.case.policies):
            ops.append(self._policy(pol, f"policies[{i}]"))
        return ops

    def check_probe(self, probe: Probe) -> None:
        for ref, f in ((probe.src, "from"), (probe.dst, "to")):
            if ref.startswith("external:"):
                if ref[len("external:"):] not in self._externals:
                    raise _FieldError(f"{probe.field}.{f}", f"no external host {_show(ref[9:])}")
            elif ref not in self.pods:
                raise _FieldError(f"{probe.field}.{f}", f"no pod {_show(ref)} at this point")

    def _create_pod(self, p: PodDecl, f: str) -> ObjectOp:
        if p.namespace not in self.namespaces:
            raise _FieldError(f"{f}.namespace", f"namespace {_show(p.namespace)} is not declared")
        if p.key in self.pods:
            raise _FieldError(f"{f}.name", f"pod {p.key} already exists")
        if p.node is not None and p.node >= self.case.nodes:
            raise _FieldError(f"{f}.node", f"{p.node} is not a node index below {self.case.nodes}")
        try:
            ip = self.plan.add_pod(p)
        except ValueError as e:
            raise _FieldError(f, str(e)) from None
        self.pods[p.key] = p
        return ObjectOp("Pod", p.namespace, p.name, pod_object(p, ip, self.plan.pod_nodes[p.key]))

    def _policy(self, raw: Any, f: str) -> ObjectOp:
        obj = substitute(copy.deepcopy(raw), self.plan.lookup, f)
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if isinstance(meta, dict):
            if not meta.get("namespace"):
                meta["namespace"] = "default"
            ns, name = meta.get("namespace"), meta.get("name")
        else:
            ns, name = "default", None
        name = name if isinstance(name, str) and name else "<unnamed>"
        ns = ns if isinstance(ns, str) else "default"
        if ns not in self.namespaces:
            raise _FieldError(f"{f}.metadata.namespace", f"namespace {_show(ns)} is not declared")
        self.policies.add(f"{ns}/{name}")
        return ObjectOp("NetworkPolicy", ns, name, obj)

    def apply_action(self, action: Action) -> list[ObjectOp]:
        """The object operations ``action`` stands for; updates the world.
        Templates anywhere in the action are expanded first."""
        f = action.field
        b = substitute(copy.deepcopy(action.body), self.plan.lookup, f)
        if action.kind == "apply":
            d = _obj(b, f, required=True)
            if d.get("kind") == "Namespace":
                meta = _obj(d.get("metadata"), f"{f}.metadata", required=True)
                name = _name(meta.get("name"), f"{f}.metadata.name", True)
                labels = _labels(meta.get("labels"), f"{f}.metadata.labels")
                self.namespaces[name] = labels
                return [ObjectOp("Namespace", "", name, namespace_object(name, labels))]
            if d.get("kind") != "NetworkPolicy":
                raise _FieldError(f"{f}.kind", f"apply takes a NetworkPolicy or a Namespace, not {_show(d.get('kind'))}")
            return [self._policy(d, f)]
        if action.kind == "delete":
            d = _obj(b, f, required=True)
            _known(d, f, ("kind", "namespace", "name"))
            kind, name = d.get("kind"), _str(d.get("name"), f"{f}.name")
            if kind == "NetworkPolicy":
                ns = _str(d.get("namespace"), f"{f}.namespace", required=False) or "default"
                if f"{ns}/{name}" not in self.policies:
                    raise _FieldError(f, f"no NetworkPolicy {ns}/{name} to delete")
                self.policies.discard(f"{ns}/{name}")
                return [ObjectOp("NetworkPolicy", ns, name, None)]
            if kind == "Namespace":
                if name not in self.namespaces:
                    raise _FieldError(f, f"no Namespace {name} to delete")
                if any(p.namespace == name for p in self.pods.values()):
                    raise _FieldError(f, f"namespace {name} still has pods; delete them first")
                del self.namespaces[name]
                gone = sorted(k for k in self.policies if k.split("/", 1)[0] == name)
                self.policies -= set(gone)
                return [ObjectOp("NetworkPolicy", name, k.split("/", 1)[1], None) for k in gone] + \
                    [ObjectOp("Namespace", "", name, None)]
            raise _FieldError(f"{f}.kind", f"delete takes NetworkPolicy or Namespace, not {_show(kind)}")
        if action.kind == "label-pod":
            d = _obj(b, f, required=True)
            _known(d, f, ("pod", "labels"))
            key = _str(d.get("pod"), f"{f}.pod")
            old = self.pods.get(key)
            if old is None:
                raise _FieldError(f"{f}.pod", f"no pod {_show(key)} at this point")
            new = PodDecl(old.namespace, old.name, _labels(d.get("labels"), f"{f}.labels"), old.ports,
                          old.node, old.host_network)
            self.pods[key] = new
            return [ObjectOp("Pod", new.namespace, new.name,
                             pod_object(new, self.plan.pod_ips[key], self.plan.pod_nodes[key]))]
        if action.kind == "label-namespace":
            d = _obj(b, f, required=True)
            _known(d, f, ("namespace", "labels"))
            name = _str(d.get("namespace"), f"{f}.namespace")
            if name not in self.namespaces:
                raise _FieldError(f"{f}.namespace", f"no namespace {_show(name)} at this point")
            labels = _labels(d.get("labels"), f"{f}.labels")
            self.namespaces[name] = labels
            return [ObjectOp("Namespace", "", name, namespace_object(name, labels))]
        if action.kind == "create-pod":
            return [self._create_pod(_pod(b, f, self.case.nodes), f)]
        if action.kind == "delete-pod":
            key = _str(b, f)
            old = self.pods.pop(key, None)
            if old is None:
                raise _FieldError(f, f"no pod {_show(key)} at this point")
            self.plan.remove_pod(key)
            return [ObjectOp("Pod", old.namespace, old.name, None)]
        raise _FieldError(f, f"unknown action {_show(action.kind)}")  # parse_case prevents this


def stages(case: Case) -> list[Stage]:
    """The whole run: initial objects and probes, then each step's
    operations and probes; raises ValueError subclasses naming the field."""
    w = World(case)
    out = [Stage(None, tuple(w.initial_ops()), case.probes)]
    for p in case.probes:
        w.check_probe(p)
    for step in case.steps:
        ops: list[ObjectOp] = []
        for a in step.actions:
            ops.extend(w.apply_action(a))
        for p in step.probes:
            w.check_probe(p)
        out.append(Stage(step.name, tuple(ops), step.probes))
    return out


def case_stages(case: Case) -> list[Stage]:
    """:func:`stages`, with errors as :class:`CaseError`."""
    try:
        return stages(case)
    except _FieldError as e:
        raise CaseError(case.file, e.field, e.message) from None


# --------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class ProbeResult:
    step: str | None
    probe: Probe
    observed: str  # "allow" or "deny"
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error and self.observed == self.probe.expect

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"step": self.step, "from": self.probe.src, "to": self.probe.dst,
                             "port": self.probe.port, "protocol": self.probe.protocol,
                             "expect": self.probe.expect, "observed": self.observed}
        if self.error:
            d["error"] = self.error
        return d


@dataclass(slots=True)
class CaseResult:
    name: str
    results: list[ProbeResult] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "failed": self.failed,
                "results": [r.to_json() for r in self.results]}


def result_document(mode: str, cases: Iterable[CaseResult]) -> dict[str, Any]:
    cs = [c.to_json() for c in cases]
    return {"mode": mode, "cases": cs, "passed": sum(c["passed"] for c in cs),
            "failed": sum(c["failed"] for c in cs)}


def write_result(doc: dict[str, Any], stream: TextIO) -> None:
    json.dump(doc, stream, indent=1)
    stream.write("\n")
