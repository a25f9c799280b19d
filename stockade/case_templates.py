"""Case templates: ``{{ip NS/POD}}``, ``{{ip external:NAME}}``, ``{{prefix NS/POD N}}``.

What: :func:`substitute` expands every template in every string of a JSON
value with any address lookup (the world passes its address plan's).

Why its own module: the template syntax is part of the case format that
policies and actions use, independent of where addresses come from.

What not: no address allocation (``case_addresses``); an unknown
reference or malformed template raises ``_FieldError`` with the field path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from stockade.case_errors import MAX_ECHO, _cut, _FieldError, _show

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
