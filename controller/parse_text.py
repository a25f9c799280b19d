"""Cached checks and normal forms of the strings Kubernetes objects carry.

What: the API server's string rules (``IsQualifiedName`` label keys,
``IsValidLabelValue``, RFC 1123 object names, ``IsValidPortName``), each
returning the problem text or None, and the canonical text of IP
addresses and CIDRs (``canonical_ip``, ``canonical_cidr``), read the way
the API server's legacy parser does (IPv4 leading zeros, host bits set).

Why its own module: pods, nodes, selectors and policies all check the same
strings, and the same keys, values and names repeat endlessly, so the
checks are cached (``lru_cache``) here once (strings longer than _CACHED_TEXT are
checked uncached, so no megabyte stays alive in a cache).

What not: no field paths and no exceptions; callers turn a problem text
into a :class:`~controller.parse_errors.ParseError` or an ``_Errors`` entry.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any

from controller.parse_limits import _CACHED_TEXT, MAX_LABEL_VALUE

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
