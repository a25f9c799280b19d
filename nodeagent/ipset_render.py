"""Render ``ipset restore`` input for our sets, and size them.

Pure functions: an :class:`~stockade.state.IPSet` (plus what the plan
decided) in, restore lines out.  Sizing is explicit: ``maxelem`` is the
member count with headroom (never below ipset's default 65,536) and
``hashsize`` grows with it, so "Hash is full" cannot happen and the kernel
does not resize hash tables while we fill them.  Content replacement goes
through a temporary set and ``swap`` (atomic for everyone matching the set);
shadow sets (``temp_name(.., "s", ..)``) carry new content during an atomic switch of
rules and sets together (see ``plan``).

Not here: deciding *what* to do (``plan``), running it (``dataplane``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable

from stockade.state import SET_PREFIX, IPSet

MIN_MAXELEM = 65536
MIN_HASHSIZE = 1024
MAX_HASHSIZE = 1 << 20
HEADROOM = 2  # maxelem = members * HEADROOM (rounded up to a power of two)
RESIZE_AT = 0.75  # a kernel set filled beyond this share of maxelem is rebuilt bigger


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def sizing(count: int) -> tuple[int, int]:
    """``(hashsize, maxelem)`` for a set of ``count`` members."""
    maxelem = max(MIN_MAXELEM, _pow2(count * HEADROOM))
    hashsize = min(MAX_HASHSIZE, max(MIN_HASHSIZE, _pow2(max(1, count // 4))))
    return hashsize, maxelem


def size_of(s: IPSet) -> int:
    return len(s.members) + len(s.nomatch)


def too_small(maxelem: int, count: int) -> bool:
    """Would ``count`` members crowd a kernel set of ``maxelem``?"""
    return count > maxelem * RESIZE_AT


def temp_name(name: str, kind: str, taken: Collection[str]) -> str:
    """A free name of ours (stk prefix, <= 31 chars) derived from ``name``:
    ``kind`` "t" for swap temporaries, "s" for shadows.  ``taken``: names
    that exist (in the kernel or in the plan), e.g. left over by a crash."""
    h = hashlib.sha256(name.encode()).hexdigest()[:20]
    for i in range(100):
        cand = f"{SET_PREFIX}{kind}{i % 10}~{h}" if i < 10 else f"{SET_PREFIX}{kind}~{i}{h}"[:31]
        if cand not in taken:
            return cand
    raise RuntimeError(f"no free temporary name for set {name!r}")


def create_line(s: IPSet, name: str | None = None, count: int | None = None) -> str:
    hashsize, maxelem = sizing(size_of(s) if count is None else count)
    fam = "inet" if s.family == "inet" else "inet6"
    extra = " counters" if s.counters else ""
    return f"create {name or s.name} {s.type} family {fam} hashsize {hashsize} maxelem {maxelem}{extra}"


def add_lines(name: str, members: Iterable[str], nomatch: Iterable[str] = ()) -> list[str]:
    out = [f"add {name} {m}" for m in sorted(members)]
    out += [f"add {name} {m} nomatch" for m in sorted(nomatch)]
    return out


def del_lines(name: str, members: Iterable[str], nomatch: Iterable[str] = ()) -> list[str]:
    out = [f"del {name} {m}" for m in sorted(members)]
    out += [f"del {name} {m}" for m in sorted(nomatch)]
    return out


def full_lines(s: IPSet, name: str | None = None) -> list[str]:
    """Create ``name`` (default: the set's own) with the whole content."""
    n = name or s.name
    return [create_line(s, n), *add_lines(n, s.members, s.nomatch)]


def replace_lines(s: IPSet, temp: str) -> list[str]:
    """Replace the content of existing set ``s.name`` atomically: fill the
    fresh temporary ``temp``, swap it in, destroy the temporary (which then
    holds the old content).  Also how a set is resized."""
    return [*full_lines(s, temp), f"swap {temp} {s.name}", f"destroy {temp}"]


def restore_text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""
