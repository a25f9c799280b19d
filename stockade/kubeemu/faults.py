"""Faults on demand: the failures a real API server or the path to it produce.

A :class:`Faults` object is plain state plus counters; tests and the lab
arm it through methods (or the ``/_emulator/faults/...`` admin endpoints),
and the server shell asks it, per request, what to do: :meth:`Faults.decide`
returns the action for one request and consumes one unit of the matching
counter.  The clock is injected so the stall window is testable without
sleeping.

Faults:
- ``cut_watches()``: every open watch stream is dropped now (the TCP
  connection is aborted mid-stream, as when an apiserver or a proxy dies);
  ``cut_watches(clean=True)`` ends them properly instead, like a server-side
  timeout.
- ``expire_next(n)``: the next n lists or watches (any resourceVersion) get
  410 Expired: an ERROR event in a 200 watch stream, a 410 Status for a list.
- ``delay(ms)``: every response is delayed by ms (0 turns it off).
- ``fail_next(n, code=500, path_prefix="")``: the next n matching requests
  get a ``Status`` error (InternalError for 500, ServiceUnavailable for 503,
  TooManyRequests for 429 ...).
- ``bad_gateway_next(n, path_prefix="")``: the next n matching requests get
  a 502 with an HTML body, as an nginx or cloud proxy in front would send.
- ``stall(seconds)``: requests arriving in the next ``seconds`` are accepted
  and not answered, not a byte, until the window ends (like a frozen
  apiserver or a black-holing proxy); a client whose timeout is shorter
  than the window never gets an answer, one still waiting afterwards is
  served normally.  Open watch streams are not affected.

Not here: the HTTP plumbing (``server``/``admin``).  Admin requests under
``/_emulator/`` are never faulted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from stockade.kubeemu.errors import ApiError

ADMIN_PREFIX = "/_emulator/"

_REASONS = {
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

BAD_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Decision:
    """What to do with one request."""

    action: Literal["serve", "error", "bad_gateway", "stall"]
    delay_seconds: float = 0.0
    error: ApiError | None = None
    stall_seconds: float = 0.0


@dataclass
class Faults:
    """Armed faults; each counter is how many more requests it applies to."""

    clock: Callable[[], float] = time.monotonic
    delay_ms: int = 0
    expire_count: int = 0
    error_count: int = 0
    error_code: int = 500
    error_prefix: str = ""
    bad_gateway_count: int = 0
    bad_gateway_prefix: str = ""
    stall_until: float = 0.0
    # Called by cut_watches(clean); the server registers its watch hub here.
    cut_listeners: list[Callable[[bool], None]] = field(default_factory=list)

    # ---- arming ---------------------------------------------------------------

    def cut_watches(self, clean: bool = False) -> None:
        for listener in list(self.cut_listeners):
            listener(clean)

    def expire_next(self, count: int = 1) -> None:
        self.expire_count = _count(count)

    def delay(self, ms: int) -> None:
        self.delay_ms = _count(ms)

    def fail_next(self, count: int = 1, code: int = 500, path_prefix: str = "") -> None:
        if not 400 <= code <= 599:
            raise ValueError(f"error code must be 4xx or 5xx, got {code}")
        self.error_count, self.error_code, self.error_prefix = _count(count), code, path_prefix

    def bad_gateway_next(self, count: int = 1, path_prefix: str = "") -> None:
        self.bad_gateway_count, self.bad_gateway_prefix = _count(count), path_prefix

    def stall(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("stall seconds must not be negative")
        self.stall_until = self.clock() + seconds

    def clear(self) -> None:
        self.delay_ms = self.expire_count = self.error_count = self.bad_gateway_count = 0
        self.stall_until = 0.0

    def describe(self) -> dict[str, object]:
        return {
            "delayMs": self.delay_ms,
            "expireCount": self.expire_count,
            "errorCount": self.error_count,
            "errorCode": self.error_code,
            "errorPathPrefix": self.error_prefix,
            "badGatewayCount": self.bad_gateway_count,
            "badGatewayPathPrefix": self.bad_gateway_prefix,
            "stallSeconds": max(0.0, self.stall_until - self.clock()),
        }

    # ---- consulting ---------------------------------------------------------------

    def decide(self, path: str) -> Decision:
        """The action for one request to ``path``; consumes a counter if one applies."""
        if path.startswith(ADMIN_PREFIX):
            return Decision("serve")
        delay = self.delay_ms / 1000.0
        remaining = self.stall_until - self.clock()
        if remaining > 0:
            return Decision("stall", delay, stall_seconds=remaining)
        if self.error_count and path.startswith(self.error_prefix):
            self.error_count -= 1
            reason = _REASONS.get(self.error_code, "InternalError" if self.error_code >= 500 else "BadRequest")
            message = "Internal error occurred: injected fault" if self.error_code == 500 else f"injected fault ({self.error_code})"
            return Decision("error", delay, error=ApiError(self.error_code, reason, message))
        if self.bad_gateway_count and path.startswith(self.bad_gateway_prefix):
            self.bad_gateway_count -= 1
            return Decision("bad_gateway", delay)
        return Decision("serve", delay)

    def take_expire(self) -> bool:
        """True if this list or watch must answer 410 (consumes one)."""
        if self.expire_count:
            self.expire_count -= 1
            return True
        return False


def _count(value: int) -> int:
    if value < 0:
        raise ValueError("counts must not be negative")
    return int(value)
