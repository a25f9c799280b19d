"""Bounded ``repr`` for error messages.

Offending values come from users and from the network (a policy, a case
file, a controller message); an error message quotes them so the reader
sees what is wrong, but a megabyte value must never make a megabyte error,
and ``str()`` of an integer of over 4,300 digits raises ValueError.  Both
the policy parser and the case reader quote through this one class.
It does not decide how long a message may be overall; callers cut that.
"""

from __future__ import annotations

import reprlib


class BoundedRepr(reprlib.Repr):
    """``repr`` bounded in depth, width and length; huge ints summarised."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 3, limit, limit, limit
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 8

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)
