"""How the parser reports problems: its exceptions, bounded quoting, and the error collector.

What: :class:`ParseError` (a pod, namespace or node, first problem only),
:class:`PolicyInvalid` (a NetworkPolicy, every problem with its field
path), ``_show``/``_key`` (offending values and map keys quoted cut to
MAX_ECHO characters, huge ints summarised, so a 1 MB value never comes
back in a message), ``_Errors`` (collects a policy's problems, keeps the
first MAX_ERRORS, counts list entries against MAX_POLICY_ENTRIES) and
``_TooBig`` (stops parsing at once when a size limit is passed).

Why its own module: the object parser, the selector parser and the policy
parser all report the same way; these are the only exceptions
``controller.parse`` lets out (docs/reliability.md).

What not: no validation rules live here (``parse_text``,
``parse_selectors``, ``parse_policy``); ``PolicyInvalid`` and
``ParseError`` are imported by users from ``controller.parse``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from controller.parse_limits import ETCD_OBJECT_BYTES, MAX_ECHO, MAX_ERRORS, MAX_POLICY_ENTRIES
from stockade.echo import BoundedRepr


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



_REPR = BoundedRepr(MAX_ECHO)


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

    def objects(self, raw: Any, path: str, allowed: frozenset[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each entry of the list ``raw`` as (its path, the entry as an object:
        ``{}`` when null or not an object), its unknown fields recorded."""
        for i, v in enumerate(self.lst(raw, path)):
            entry_path = f"{path}[{i}]"
            d = self.obj(v, entry_path) or {}
            self.known(d, entry_path, allowed)
            yield entry_path, d

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

