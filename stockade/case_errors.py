"""How case-file problems are reported: :class:`CaseError`, and values quoted short.

What: :class:`CaseError` (file, JSON field path, message: the only error a
bad case file ends as), ``_FieldError`` (the same before the file name is
known; :func:`~stockade.case_format.parse_case` and
:func:`~stockade.case_world.case_stages` turn it into a ``CaseError``),
and ``_show``/``_cut``, which quote offending values cut to MAX_ECHO
characters (huge ints summarised) and field paths to MAX_FIELD_TEXT.

Why its own module: field checks, templates, the world and the loader all
raise these, and docs/reliability.md promises that a bad file never
echoes a huge value back.

What not: no checks; users import ``CaseError`` from ``stockade.cases``.
"""

from __future__ import annotations

from typing import Any

from stockade.echo import BoundedRepr

MAX_ECHO = 80
"""Characters of an offending value quoted in an error message (longer
values are cut and their length given), so a huge value never comes back
in full."""

MAX_FIELD_TEXT = 300
"""Longest field path (and, x4, message) a :class:`CaseError` carries; map
keys come from the file and may be arbitrarily long."""


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


_REPR = BoundedRepr(MAX_ECHO)


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

