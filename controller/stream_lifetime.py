"""How long an admitted agent stream may stay open: the pure rule.

A token is checked (TokenReview + its pod) only when a stream opens, and a
stream can stay open for days, so the controller bounds each stream's life
and ends it with ``UNAVAILABLE`` (trailing metadata ``stockade-reconnect``)
when the admission stops being good; the agent reconnects at once with the
token file as it is then, says hello with its applied digest and gets
InSync (no kernel write), or is refused if its credentials are no longer
valid (and keeps enforcing what it has: fail-static).

The end of a stream is the earlier of the token's own expiry (the JWT
``exp`` claim, read only to schedule this: the TokenReview stays the
authority) and ``max_age`` after admission (0: no age limit), moved
earlier by a random part of up to ``jitter`` of the lifetime, so that
agents admitted together (a controller restart) do not all reconnect in
the same second, and never sooner than ``min_age`` after admission (a
token already expired by this clock but accepted by the API server, clock
skew, must not make an agent reconnect in a loop).

Pure: times and the random draw come in as arguments.  Not here: the timer
and the gRPC status (``controller.grpc_server``), reading ``exp``
(``controller.node_binding.token_expiry``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

EndReason = Literal["token_expiry", "max_age"]
RECONNECT_METADATA = "stockade-reconnect"  # trailing metadata key of a stream the controller ended on purpose


@dataclass(frozen=True, slots=True)
class StreamLifetime:
    """``max_age`` seconds at most (0: unlimited); ``min_age`` at least;
    ``jitter``: the fraction of the lifetime the end may move earlier."""

    max_age: float = 3600.0
    min_age: float = 10.0
    jitter: float = 0.1

    def end(self, now: float, token_expires: float | None, rand: float) -> tuple[float, EndReason] | None:
        """Seconds from ``now`` (Unix seconds) until the stream should end, and
        why; None when it may stay open for ever (no expiry, no age limit).
        ``rand``: a draw in [0, 1)."""
        candidates: list[tuple[float, EndReason]] = []
        if token_expires:
            candidates.append((token_expires - now, "token_expiry"))
        if self.max_age > 0:
            candidates.append((self.max_age, "max_age"))
        if not candidates:
            return None
        life, reason = min(candidates, key=lambda c: c[0])
        life -= max(0.0, life) * self.jitter * min(max(rand, 0.0), 1.0)
        return max(life, self.min_age), reason

    def describe(self) -> str:
        age = f"{self.max_age:g}s" if self.max_age > 0 else "unlimited"
        return f"max stream age {age}, capped by the token's expiry"
