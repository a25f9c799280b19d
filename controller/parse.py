"""Kubernetes JSON -> ``controller.model`` records, validating policies.

What: ``parse_namespace``, ``parse_pod``, ``parse_node`` and
``parse_policy`` turn dicts shaped as the API server returns them (or as
``kubectl apply`` sends them) into the slim immutable records of
``controller.model``.  ``parse_policy`` validates the way the API server
does (``pkg/apis/networking/validation.ValidateNetworkPolicy`` plus the
label-selector and object-name checks it calls) and reports *every* problem
at once in :class:`PolicyInvalid`, each error prefixed with its field path
(``spec.ingress[0].from[1].ipBlock.except[0]: ...``).  Unknown fields are
errors too, as with ``kubectl``'s strict field validation: a typo such as
``ingres`` would otherwise silently turn a policy into deny-all.

Why one module: the controller's watches, ``stockade evaluate`` and the lab
all go through the same parser, so a policy means one thing everywhere.

Normal forms (so equal meaning gives equal records, which lets the compiler
share sets): selectors with ``matchLabels: null``, ``{}`` or absent are the
select-all selector; a peer with a namespace selector but no pod selector
gets the select-all pod selector; ``endPort == port`` is dropped; policy
types are the effective ones (given, or inferred: Ingress always, Egress iff
there are egress rules); IPs and CIDRs are in canonical text.  CIDRs follow
the API server's legacy parsing (host bits set, IPv4 leading zeros): 1.36's
StrictIPCIDRValidation rejects such values on create, but objects stored by
older API servers keep them and must still be enforced (host bits cleared).

Speed: the compiler's benchmark parses 150,000 pods and 75,000 policies,
so string checks are cached (``lru_cache``), label maps and selectors are
interned, and no per-character Python loops run.

Hostile or enormous input (docs/reliability.md): the only exceptions are
:class:`PolicyInvalid` and :class:`ParseError`; a policy larger than any
object etcd can store is refused (ipBlocks counted in one pass before any
rule is parsed, MAX_POLICY_IPBLOCKS; list entries as each list is reached,
MAX_POLICY_ENTRIES); messages quote offending values
cut to MAX_ECHO characters and list at most MAX_ERRORS problems.

What not: pods, namespaces and nodes are *not* validated beyond their shape
(the API server already did; odd-but-legal input is accepted), except
for the length of label keys and values.  Nothing here does I/O or keeps
state beyond the interning caches.
"""

from __future__ import annotations

import ipaddress
import re
import reprlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from controller.model import (
    OPERATORS,
    PROTOCOLS,
    SELECT_ALL,
    ContainerPort,
    IPBlock,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Node,
    Operator,
    Peer,
    Pod,
    PolicyRule,
    PolicyType,
    PortSpec,
    Requirement,
)

__all__ = [
    "ParseError",
    "PolicyInvalid",
    "canonical_cidr",
    "canonical_ip",
    "parse_namespace",
    "parse_node",
    "parse_pod",
    "parse_policy",
    "policy_key_of",
]


class ParseError(ValueError):
    """A pod, namespace or node object that is malformed; ``field`` is the
    path of the offending field (``status.podIPs[1].ip``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PolicyInvalid(ValueError):
    """A NetworkPolicy the API server would reject.  ``key`` is
    ``namespace/name`` (best effort when the name itself is bad);
    ``errors`` lists every problem, each starting with its field path."""

    def __init__(self, key: str, errors: list[str]) -> None:
        super().__init__(f"NetworkPolicy {_key(key)} is invalid: " + "; ".join(errors))
        self.key = key
        self.errors = errors


# --------------------------------------------------------------------------
# Limits: inputs that must not break anything (docs/reliability.md)

ETCD_OBJECT_BYTES = 1_572_864
"""etcd's default request size limit (``--max-request-bytes``, 1.5 MiB).
No object the API server stores is larger, so the limits derived from it
below never refuse a policy a real cluster can hold; they only stop
objects no API server would send (a bug, a hand-made watch event, a fuzzer)
from costing the controller unbounded time and memory."""

MAX_POLICY_IPBLOCKS = ETCD_OBJECT_BYTES // 28
"""ipBlock peers in one policy (56,173).  The shortest ipBlock peer,
``{"ipBlock":{"cidr":"::/0"}},``, is 28 bytes of JSON, so a policy with
more cannot be stored.  Above it :func:`parse_policy` raises
:class:`PolicyInvalid` naming the list and the limit, before parsing any
entry of that list."""

MAX_POLICY_ENTRIES = ETCD_OBJECT_BYTES // 3
"""List entries in one policy, every list counted together (rules, peers,
ports, except CIDRs, match expressions, their values, policy types):
524,288.  The shortest JSON list entry (``"",`` or ``{},``) is 3 bytes.
Checked as each list is reached, before its entries are read."""

MAX_ERRORS = 100
"""Problems a :class:`PolicyInvalid` lists; the rest are counted in a last
``... and N more problems`` entry, so a policy with 50,000 bad entries
gives a readable report (log line, status page, ``stockade evaluate``)."""

MAX_ECHO = 80
"""Characters of an offending value (or map key) quoted in an error
message.  A longer value is shown cut, with its length
(``'xxxx...'... (1000000 characters)``): a 1 MB label value never comes
back in a message, a log line or the status page."""

MAX_LABEL_VALUE = 63
"""Longest label value the API server accepts (``IsValidLabelValue``); pods,
namespaces and nodes with a longer one are refused with :class:`ParseError`
(a cheap length check, not a full validation)."""

MAX_LABEL_KEY = 253 + 1 + 63
"""Longest label key the API server accepts: a 253-character DNS prefix,
``/``, a 63-character name."""

_CACHED_TEXT = 64  # strings longer than this are checked without the lru caches (no megabyte kept alive)


class _Repr(reprlib.Repr):
    """``repr`` bounded in depth, width and length; huge ints are summarised
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


def _show(v: Any, quote: bool = True) -> str:
    """A value for an error message: ``repr`` when short, else cut (MAX_ECHO)."""
    if isinstance(v, str):
        if len(v) <= MAX_ECHO:
            return repr(v) if quote else v
        head = v[:MAX_ECHO]
        return f"{head!r}... ({len(v)} characters)" if quote else f"{head}... ({len(v)} characters)"
    if v is None or isinstance(v, bool | float):
        return repr(v)
    if isinstance(v, int | list | tuple | dict):
        try:
            return _REPR.repr(v)
        except (ValueError, RecursionError):
            return f"<{type(v).__name__}>"
    return f"<{type(v).__name__}>"


def _key(k: Any) -> str:
    """A map key inside a field path (``metadata.labels[KEY]``), cut like :func:`_show`."""
    if isinstance(k, str) and 0 < len(k) <= MAX_ECHO:
        return k
    if k == "":
        return '""'  # an empty key still makes a visible path (``"": unknown field``)
    return _show(k, quote=False)


# --------------------------------------------------------------------------
# String checks (cached: the same keys, values and names repeat endlessly)

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_PORT_NAME_CHARS = re.compile(r"[-a-z0-9]+")
_HAS_LETTER = re.compile(r"[a-z]")


def _label_value_problem(value: str) -> str | None:
    if len(value) > MAX_LABEL_VALUE:
        return "must be no more than 63 characters"
    return _label_value_problem_cached(value)


@lru_cache(maxsize=65536)
def _label_value_problem_cached(value: str) -> str | None:
    if value == "":
        return None
    if _QUALIFIED_NAME.fullmatch(value) is None:
        return ("must consist of alphanumeric characters, '-', '_' or '.', and must start "
                "and end with an alphanumeric character")
    return None


def _label_key_problem(key: Any) -> str | None:
    if not isinstance(key, str):
        return f"must be a string, not {type(key).__name__}"
    if len(key) > _CACHED_TEXT:
        return _label_key_problem_of(key)
    return _label_key_problem_cached(key)


def _label_key_problem_of(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "prefix part must be non-empty"
    if slash:
        if len(prefix) > 253:
            return "prefix part must be no more than 253 characters"
        if _DNS1123_SUBDOMAIN.fullmatch(prefix) is None:
            return "prefix part must be a lowercase RFC 1123 subdomain"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if _QUALIFIED_NAME.fullmatch(name) is None:
        return ("name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                "start and end with an alphanumeric character")
    return None


_label_key_problem_cached = lru_cache(maxsize=65536)(_label_key_problem_of)


def _port_name_problem(name: str) -> str | None:
    """IANA_SVC_NAME (RFC 6335), as ``validation.IsValidPortName``."""
    if not 1 <= len(name) <= 15:
        return "must be no more than 15 characters"
    return _port_name_problem_cached(name)


@lru_cache(maxsize=4096)
def _port_name_problem_cached(name: str) -> str | None:
    if _PORT_NAME_CHARS.fullmatch(name) is None:
        return "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    if _HAS_LETTER.search(name) is None:
        return "must contain at least one letter (a-z)"
    if "--" in name:
        return "must not contain consecutive hyphens"
    if name[0] == "-" or name[-1] == "-":
        return "must not begin or end with a hyphen"
    return None


def _name_problem(name: str, label: bool) -> str | None:
    if label:
        if len(name) > 63 or _DNS1123_LABEL.fullmatch(name) is None:
            return "must be a lowercase RFC 1123 label (at most 63 characters, a-z, 0-9 and '-')"
    elif len(name) > 253 or _DNS1123_SUBDOMAIN.fullmatch(name) is None:
        return "must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.')"
    return None


def _sloppy(text: str) -> str:
    """Go's ``ParseCIDRSloppy`` reads IPv4 octets with leading zeros as
    decimal; Python refuses them.  Strip them (IPv4 only)."""
    if "." in text and ":" not in text:
        addr, slash, plen = text.partition("/")
        parts = addr.split(".")
        if len(parts) == 4 and all(p.isdigit() and p.isascii() for p in parts):
            return ".".join(str(int(p)) for p in parts) + slash + plen
    return text


def canonical_cidr(text: str) -> str | None:
    """Canonical network text of ``text`` (host bits cleared), None if it
    is not a CIDR."""
    if len(text) > _CACHED_TEXT:
        return _canonical_cidr(text)
    return _canonical_cidr_cached(text)


def _canonical_cidr(text: str) -> str | None:
    if "/" not in text:
        return None
    try:
        return str(ipaddress.ip_network(_sloppy(text), strict=False))
    except ValueError:
        return None


_canonical_cidr_cached = lru_cache(maxsize=65536)(_canonical_cidr)


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_V4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def canonical_ip(text: str) -> str | None:
    """Canonical address text, None if ``text`` is not an address."""
    if _CANONICAL_V4.fullmatch(text) is not None:  # the common case, already canonical
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


# --------------------------------------------------------------------------
# Interning

_LABELS: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}
_SELECTORS: dict[object, LabelSelector] = {}
_EMPTY_LABELS: Mapping[str, str] = {}
_INTERN_LIMIT = 1 << 16


def _intern_labels(raw: dict[str, str]) -> Mapping[str, str]:
    if not raw:
        return _EMPTY_LABELS
    k = tuple(raw.items())
    got = _LABELS.get(k)
    if got is None:
        if len(_LABELS) >= _INTERN_LIMIT:
            _LABELS.clear()
        got = _LABELS[k] = dict(raw)
    return got


# --------------------------------------------------------------------------
# Shape helpers for pods/namespaces/nodes (ParseError on the first problem)


def _obj(v: Any, field: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ParseError(field, f"must be an object, not {type(v).__name__}")
    return v


def _list(v: Any, field: str) -> list[Any]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ParseError(field, f"must be a list, not {type(v).__name__}")
    return v


def _str(v: Any, field: str, required: bool = False) -> str:
    if v is None or v == "":
        if required:
            raise ParseError(field, "required")
        return ""
    if not isinstance(v, str):
        raise ParseError(field, f"must be a string, not {type(v).__name__}")
    return v


def _labels(v: Any, field: str) -> Mapping[str, str]:
    if v is None:
        return _EMPTY_LABELS
    if not isinstance(v, dict):
        raise ParseError(field, f"must be an object, not {type(v).__name__}")
    for k, val in v.items():
        if not isinstance(val, str):
            raise ParseError(f"{field}[{_key(k)}]", f"must be a string, not {type(val).__name__}")
        if len(val) > MAX_LABEL_VALUE:
            raise ParseError(f"{field}[{_key(k)}]", f"label value of {len(val)} characters is longer than "
                                                    f"{MAX_LABEL_VALUE}")
        if not isinstance(k, str) or len(k) > MAX_LABEL_KEY:
            raise ParseError(f"{field}[{_key(k)}]", f"label key must be a string of at most {MAX_LABEL_KEY} "
                                                    "characters")
    return _intern_labels(v)


def _meta(obj: Any, default_namespace: str | None) -> tuple[str, str, Mapping[str, str]]:
    if not isinstance(obj, dict):
        raise ParseError("<object>", f"must be an object, not {type(obj).__name__}")
    meta = _obj(obj.get("metadata"), "metadata")
    name = _str(meta.get("name"), "metadata.name", required=True)
    ns = ""
    if default_namespace is not None:
        ns = _str(meta.get("namespace"), "metadata.namespace") or default_namespace
    return ns, name, _labels(meta.get("labels"), "metadata.labels")


def parse_namespace(obj: Any) -> Namespace:
    """A Namespace object -> :class:`Namespace`."""
    _, name, labels = _meta(obj, None)
    return Namespace(name, labels)


@lru_cache(maxsize=8192)
def _container_port(num: int, proto: str, name: str) -> ContainerPort:
    return ContainerPort(num, proto, name)  # type: ignore[arg-type]  # proto checked by the caller


def _container_ports(spec: dict[str, Any]) -> tuple[ContainerPort, ...]:
    out: list[ContainerPort] = []
    groups = [("spec.containers", _list(spec.get("containers"), "spec.containers"))]
    inits = _list(spec.get("initContainers"), "spec.initContainers")
    if inits:
        groups.append(("spec.initContainers", inits))
    for base, containers in groups:
        for ci, c in enumerate(containers):
            if not isinstance(c, dict):
                _obj(c, f"{base}[{ci}]")  # raises
                continue
            if base == "spec.initContainers" and c.get("restartPolicy") != "Always":
                continue  # only sidecar init containers keep serving
            ports = c.get("ports")
            if not ports:
                continue
            for pi, p in enumerate(_list(ports, f"{base}[{ci}].ports")):
                if not isinstance(p, dict):
                    _obj(p, f"{base}[{ci}].ports[{pi}]")
                    continue
                num = p.get("containerPort")
                proto = p.get("protocol") or "TCP"
                name = p.get("name") or ""
                if type(num) is not int or not 0 < num < 65536:
                    raise ParseError(f"{base}[{ci}].ports[{pi}].containerPort",
                                     f"must be a port number 1-65535, not {_show(num)}")
                if proto not in PROTOCOLS:
                    raise ParseError(f"{base}[{ci}].ports[{pi}].protocol", f"unsupported protocol {_show(proto)}")
                if not isinstance(name, str):
                    raise ParseError(f"{base}[{ci}].ports[{pi}].name", f"must be a string, not {type(name).__name__}")
                out.append(_container_port(num, proto, name))
    return tuple(out)


def parse_pod(obj: Any) -> Pod:
    """A Pod object -> :class:`Pod`.  IPs from ``status.podIPs`` (dual
    stack), else ``status.podIP``; canonical text, duplicates dropped."""
    ns, name, labels = _meta(obj, "default")
    spec = _obj(obj.get("spec"), "spec")
    status = _obj(obj.get("status"), "status")
    host_network = spec.get("hostNetwork") or False
    if not isinstance(host_network, bool):
        raise ParseError("spec.hostNetwork", f"must be a boolean, not {_show(host_network)}")
    raw_ips: list[tuple[str, Any]] = []
    pod_ips = _list(status.get("podIPs"), "status.podIPs")
    for i, e in enumerate(pod_ips):
        raw_ips.append((f"status.podIPs[{i}].ip", _obj(e, f"status.podIPs[{i}]").get("ip")))
    if not raw_ips and status.get("podIP"):
        raw_ips.append(("status.podIP", status.get("podIP")))
    ips: list[str] = []
    for field, raw in raw_ips:
        ip = canonical_ip(_str(raw, field, required=True))
        if ip is None:
            raise ParseError(field, f"{_show(raw)} is not an IP address")
        if ip not in ips:
            ips.append(ip)
    return Pod(
        namespace=ns,
        name=name,
        labels=labels,
        node=_str(spec.get("nodeName"), "spec.nodeName"),
        ips=tuple(ips),
        host_network=host_network,
        phase=_str(status.get("phase"), "status.phase") or "Pending",
        ports=_container_ports(spec),
    )


def parse_node(obj: Any) -> Node:
    """A Node object -> :class:`Node` (InternalIP/ExternalIP addresses,
    ``spec.podCIDRs`` else ``spec.podCIDR``)."""
    _, name, _ = _meta(obj, None)
    spec = _obj(obj.get("spec"), "spec")
    status = _obj(obj.get("status"), "status")
    addrs: list[str] = []
    for i, a in enumerate(_list(status.get("addresses"), "status.addresses")):
        a = _obj(a, f"status.addresses[{i}]")
        if a.get("type") not in ("InternalIP", "ExternalIP"):
            continue
        raw = _str(a.get("address"), f"status.addresses[{i}].address", required=True)
        ip = canonical_ip(raw)
        if ip is None:
            raise ParseError(f"status.addresses[{i}].address", f"{_show(raw)} is not an IP address")
        if ip not in addrs:
            addrs.append(ip)
    cidrs: list[str] = []
    raw_cidrs = [(f"spec.podCIDRs[{i}]", c) for i, c in enumerate(_list(spec.get("podCIDRs"), "spec.podCIDRs"))]
    if not raw_cidrs and spec.get("podCIDR"):
        raw_cidrs = [("spec.podCIDR", spec.get("podCIDR"))]
    for field, raw in raw_cidrs:
        c = canonical_cidr(_str(raw, field, required=True))
        if c is None:
            raise ParseError(field, f"{_show(raw)} is not a CIDR")
        if c not in cidrs:
            cidrs.append(c)
    return Node(name, tuple(addrs), tuple(cidrs))


# --------------------------------------------------------------------------
# NetworkPolicy: collect every error with its path


def policy_key_of(obj: Any, default_namespace: str = "default") -> str:
    """``namespace/name`` of a policy object, best effort (for error reports
    about objects too broken to parse)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    ns = meta.get("namespace") if isinstance(meta.get("namespace"), str) and meta.get("namespace") else default_namespace
    name = meta.get("name") if isinstance(meta.get("name"), str) and meta.get("name") else "<unnamed>"
    return f"{ns}/{name}"


class _TooBig(Exception):
    """A policy past one of the size limits: parsing stops at once."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.text = f"{path}: {message}"


class _Errors:
    """``items``: the first MAX_ERRORS problems; ``count``: all of them;
    ``entries``: list entries seen so far (MAX_POLICY_ENTRIES)."""

    __slots__ = ("count", "entries", "items")

    def __init__(self) -> None:
        self.items: list[str] = []
        self.count = 0
        self.entries = 0

    def add(self, path: str, message: str) -> None:
        self.count += 1
        if self.count <= MAX_ERRORS:
            self.items.append(f"{path}: {message}")

    def report(self) -> list[str]:
        if self.count > MAX_ERRORS:
            return [*self.items, f"... and {self.count - MAX_ERRORS} more problems"]
        return self.items

    def known(self, obj: dict[str, Any], path: str, allowed: frozenset[str]) -> None:
        for k in obj:
            if k not in allowed:
                self.add(f"{path}.{_key(k)}" if path else _key(k), "unknown field")

    def obj(self, v: Any, path: str) -> dict[str, Any] | None:
        """``v`` as an object (None stays None); records a type error."""
        if v is None or isinstance(v, dict):
            return v
        self.add(path, f"must be an object, not {type(v).__name__}")
        return None

    def lst(self, v: Any, path: str) -> list[Any]:
        if v is None:
            return []
        if isinstance(v, list):
            self.entries += len(v)
            if self.entries > MAX_POLICY_ENTRIES:
                raise _TooBig(path, f"{len(v)} entries take the policy past {MAX_POLICY_ENTRIES} list entries "
                                    f"(more than etcd's {ETCD_OBJECT_BYTES}-byte object limit can hold)")
            return v
        self.add(path, f"must be a list, not {type(v).__name__}")
        return []


_TOP = frozenset({"apiVersion", "kind", "metadata", "spec", "status"})
_SPEC = frozenset({"podSelector", "ingress", "egress", "policyTypes"})
_INGRESS = frozenset({"from", "ports"})
_EGRESS = frozenset({"to", "ports"})
_PEER = frozenset({"podSelector", "namespaceSelector", "ipBlock"})
_PORT = frozenset({"protocol", "port", "endPort"})
_IPBLOCK = frozenset({"cidr", "except"})
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


def _port_num(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_Problems = tuple[tuple[str, str], ...]  # (field suffix, message)
_CACHEABLE_PORT = (int, str, type(None))


def _port_entry(proto: Any, port: Any, end: Any) -> tuple[PortSpec, _Problems]:
    """``ValidateNetworkPolicyPort`` for one entry's values."""
    probs: list[tuple[str, str]] = []
    if proto is None:
        proto = "TCP"
    elif proto not in PROTOCOLS:
        probs.append((".protocol", f"unsupported protocol {_show(proto)}: supported values are TCP, UDP, SCTP"))
        proto = "TCP"
    if end is not None and not _port_num(end):
        probs.append((".endPort", f"must be an integer, not {_show(end)}"))
        end = None
    if port is None:
        if end is not None:
            probs.append((".endPort", "may not be specified when port is not specified"))
    elif _port_num(port):
        if not 1 <= port <= 65535:
            probs.append((".port", f"{_show(port)} must be between 1 and 65535, inclusive"))
        if end is not None:
            if end < port:
                probs.append((".endPort", f"{_show(end)} must be greater than or equal to port {_show(port)}"))
            if not 1 <= end <= 65535:
                probs.append((".endPort", f"{_show(end)} must be between 1 and 65535, inclusive"))
            if end == port:
                end = None
    elif isinstance(port, str):
        if end is not None:
            probs.append((".endPort", f"may not be specified when port is a named port ({_show(port)})"))
        prob = _port_name_problem(port)
        if prob:
            probs.append((".port", f"invalid port name {_show(port)}: {prob}"))
    else:
        probs.append((".port", f"must be a port number or a port name, not {_show(port)}"))
        port = None
    return PortSpec(proto, port, end), tuple(probs)


_port_entry_cached = lru_cache(maxsize=4096)(_port_entry)


def _ports(raw: Any, path: str, errs: _Errors) -> tuple[PortSpec, ...]:
    out: list[PortSpec] = []
    for i, p in enumerate(errs.lst(raw, path)):
        pp = f"{path}[{i}]"
        p = errs.obj(p, pp)
        if p is None:
            p = {}
        errs.known(p, pp, _PORT)
        proto, port, end = p.get("protocol"), p.get("port"), p.get("endPort")
        # 1 == True == 1.0 to a cache: only exact int/str/None values are cached
        if type(port) in _CACHEABLE_PORT and type(end) in _CACHEABLE_PORT and type(proto) in _CACHEABLE_PORT:
            spec, probs = _port_entry_cached(proto, port, end)
        else:
            spec, probs = _port_entry(proto, port, end)
        for suffix, msg in probs:
            errs.add(pp + suffix, msg)
        out.append(spec)
    return tuple(out)


def _except_key(c: str) -> tuple[bytes, str]:
    return ipaddress.ip_network(c).network_address.packed, c


def _ip_block_entry(cidr_raw: str, excepts_raw: tuple[str, ...]) -> tuple[IPBlock, _Problems]:
    """``ValidateIPBlock``: a CIDR, and excepts strictly within it."""
    cidr = canonical_cidr(cidr_raw)
    if cidr is None:
        return IPBlock("0.0.0.0/0"), ((".cidr", f"{_show(cidr_raw)} is not a valid CIDR (e.g. 10.9.8.0/24 or 2001:db8::/64)"),)
    net = ipaddress.ip_network(cidr)
    probs: list[tuple[str, str]] = []
    excepts: set[str] = set()
    for i, ex in enumerate(excepts_raw):
        exc = canonical_cidr(ex)
        if exc is None:
            probs.append((f".except[{i}]", f"{_show(ex)} is not a valid CIDR (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
            continue
        en = ipaddress.ip_network(exc)
        if en.version != net.version or not en.subnet_of(net) or en.prefixlen <= net.prefixlen:  # type: ignore[arg-type]
            probs.append((f".except[{i}]", f"{_show(ex, quote=False)} is not within cidr {_show(cidr_raw, quote=False)} (must be a strict subset)"))
            continue
        excepts.add(exc)
    return IPBlock(cidr, tuple(sorted(excepts, key=_except_key))), tuple(probs)


_ip_block_entry_cached = lru_cache(maxsize=16384)(_ip_block_entry)


def _ip_block(raw: dict[str, Any], path: str, errs: _Errors) -> IPBlock:
    errs.known(raw, path, _IPBLOCK)
    cidr_raw = raw.get("cidr")
    if not cidr_raw:
        errs.add(f"{path}.cidr", "required")
        return IPBlock("0.0.0.0/0")
    if not isinstance(cidr_raw, str):
        errs.add(f"{path}.cidr", f"{_show(cidr_raw)} is not a valid CIDR (e.g. 10.9.8.0/24 or 2001:db8::/64)")
        return IPBlock("0.0.0.0/0")
    ex_list = errs.lst(raw.get("except"), f"{path}.except")
    bad = [i for i, e in enumerate(ex_list) if not isinstance(e, str)]
    for i in bad:
        errs.add(f"{path}.except[{i}]", f"{_show(ex_list[i])} is not a valid CIDR (e.g. 10.9.8.0/24 or 2001:db8::/64)")
    if bad:
        return IPBlock("0.0.0.0/0")
    excepts = tuple(ex_list)
    small = len(excepts) <= 16 and len(cidr_raw) <= _CACHED_TEXT and all(len(e) <= _CACHED_TEXT for e in excepts)
    block, probs = (_ip_block_entry_cached if small else _ip_block_entry)(cidr_raw, excepts)
    for suffix, msg in probs:
        errs.add(path + suffix, msg)
    return block


def _peers(raw: Any, path: str, errs: _Errors) -> tuple[Peer, ...]:
    """``ValidateNetworkPolicyPeer`` for each entry."""
    out: list[Peer] = []
    for i, pe in enumerate(errs.lst(raw, path)):
        pp = f"{path}[{i}]"
        d = errs.obj(pe, pp)
        if d is None:
            d = {}
        errs.known(d, pp, _PEER)
        pod_raw, ns_raw, ipb_raw = d.get("podSelector"), d.get("namespaceSelector"), d.get("ipBlock")
        n = (pod_raw is not None) + (ns_raw is not None) + (ipb_raw is not None)
        if n == 0:
            errs.add(pp, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
            continue
        if ipb_raw is not None and n > 1:
            errs.add(pp, "may not specify both ipBlock and another peer")
        pod_sel = _selector(pod_raw, f"{pp}.podSelector", errs) if pod_raw is not None else None
        ns_sel = _selector(ns_raw, f"{pp}.namespaceSelector", errs) if ns_raw is not None else None
        if ipb_raw is not None:
            ipd = errs.obj(ipb_raw, f"{pp}.ipBlock")
            if ipd is not None:
                out.append(Peer(ip_block=_ip_block(ipd, f"{pp}.ipBlock", errs)))
            continue
        if ns_sel is not None and pod_sel is None:
            pod_sel = SELECT_ALL
        out.append(Peer(pod_selector=pod_sel, namespace_selector=ns_sel))
    return tuple(out)


def _rules(raw: Any, path: str, peers_field: str, allowed: frozenset[str], errs: _Errors) -> tuple[PolicyRule, ...]:
    out: list[PolicyRule] = []
    for i, r in enumerate(errs.lst(raw, path)):
        rp = f"{path}[{i}]"
        d = errs.obj(r, rp) or {}
        errs.known(d, rp, allowed)
        ports = _ports(d.get("ports"), f"{rp}.ports", errs)
        peers = _peers(d.get(peers_field), f"{rp}.{peers_field}", errs)
        out.append(PolicyRule(peers, ports))
    return tuple(out)


def parse_policy(obj: Any, default_namespace: str = "default") -> NetworkPolicy:
    """A NetworkPolicy object -> :class:`NetworkPolicy`, or
    :class:`PolicyInvalid` listing every error with its field path.  A
    policy without ``metadata.namespace`` lands in ``default_namespace``,
    as ``kubectl apply`` does."""
    key = policy_key_of(obj, default_namespace)
    if not isinstance(obj, dict):
        raise PolicyInvalid(key, [f"<object>: must be an object, not {type(obj).__name__}"])
    try:
        return _policy(obj, default_namespace, key)
    except _TooBig as e:
        raise PolicyInvalid(key, [e.text]) from None


def _count_ip_blocks(spec: Any) -> None:
    """Raise _TooBig, naming the peer list where the count passes
    MAX_POLICY_IPBLOCKS, before any rule is parsed (one cheap pass)."""
    if not isinstance(spec, dict):
        return
    total = 0
    for direction, peers_field in (("ingress", "from"), ("egress", "to")):
        rules = spec.get(direction)
        if not isinstance(rules, list):
            continue
        for i, r in enumerate(rules):
            peers = r.get(peers_field) if isinstance(r, dict) else None
            if not isinstance(peers, list):
                continue
            total += sum(1 for pe in peers if isinstance(pe, dict) and pe.get("ipBlock") is not None)
            if total > MAX_POLICY_IPBLOCKS:
                raise _TooBig(f"spec.{direction}[{i}].{peers_field}",
                              f"the policy has more than {MAX_POLICY_IPBLOCKS} ipBlock peers "
                              f"(more than etcd's {ETCD_OBJECT_BYTES}-byte object limit can hold)")


def _policy(obj: dict[str, Any], default_namespace: str, key: str) -> NetworkPolicy:
    _count_ip_blocks(obj.get("spec"))
    errs = _Errors()
    errs.known(obj, "", _TOP)
    kind = obj.get("kind")
    if kind is not None and kind != "NetworkPolicy":
        errs.add("kind", f"{_show(kind)} is not NetworkPolicy")
    api = obj.get("apiVersion")
    if api is not None and api != "networking.k8s.io/v1":
        errs.add("apiVersion", f"{_show(api)} is not networking.k8s.io/v1")
    meta = errs.obj(obj.get("metadata"), "metadata") or {}
    name = meta.get("name")
    if not name:
        errs.add("metadata.name", "required")
        name = ""
    elif not isinstance(name, str):
        errs.add("metadata.name", f"must be a string, not {type(name).__name__}")
        name = ""
    elif (prob := _name_problem(name, label=False)) is not None:
        errs.add("metadata.name", f"invalid name {_show(name)}: {prob}")
    ns = meta.get("namespace") or default_namespace
    if not isinstance(ns, str):
        errs.add("metadata.namespace", f"must be a string, not {type(ns).__name__}")
        ns = default_namespace
    elif (prob := _name_problem(ns, label=True)) is not None:
        errs.add("metadata.namespace", f"invalid namespace {_show(ns)}: {prob}")
    mlabels = errs.obj(meta.get("labels"), "metadata.labels") or {}
    for k, v in mlabels.items():
        if (prob := _label_key_problem(k)) is not None:
            errs.add(f"metadata.labels[{_key(k)}]", f"invalid label key {_show(k)}: {prob}")
        if not isinstance(v, str) or (prob := _label_value_problem(v)) is not None:
            errs.add(f"metadata.labels[{_key(k)}]", f"invalid label value {_show(v)}: {prob or 'must be a string'}")

    spec = errs.obj(obj.get("spec"), "spec") or {}
    errs.known(spec, "spec", _SPEC)
    pod_selector = _selector(spec.get("podSelector"), "spec.podSelector", errs)
    ingress = _rules(spec.get("ingress"), "spec.ingress", "from", _INGRESS, errs)
    egress = _rules(spec.get("egress"), "spec.egress", "to", _EGRESS, errs)

    types_raw = errs.lst(spec.get("policyTypes"), "spec.policyTypes")
    types: list[PolicyType] = []
    if len(types_raw) > 2:
        errs.add("spec.policyTypes", f"may not specify more than two policyTypes (got {len(types_raw)})")
    else:
        for i, t in enumerate(types_raw):
            if t == "Ingress" or t == "Egress":
                if t not in types:
                    types.append(t)
            else:
                errs.add(f"spec.policyTypes[{i}]", f"unsupported value {_show(t)}: supported values are Ingress, Egress")
    if not types_raw:
        types = ["Ingress", "Egress"] if egress else ["Ingress"]
    if errs.count:
        raise PolicyInvalid(key, errs.report())
    order: tuple[PolicyType, ...] = ("Ingress", "Egress")
    ordered = tuple(t for t in order if t in types)
    return NetworkPolicy(ns, name, pod_selector, ordered, ingress, egress)

