"""Exponential backoff with optional jitter, shared by every retry loop.

The controller's watches, the agent's stream client and the distributor's
snapshot retries all wait ``initial * 2**n`` capped at ``maximum``, the
first two with a random factor in ``[1 - jitter, 1]`` so that many clients
do not retry in step.  Pure: the caller supplies the random number and does
the sleeping.
"""

from __future__ import annotations


def exponential(initial: float, maximum: float, n: int) -> float:
    """``initial * 2**n`` capped at ``maximum`` (``n`` >= 0; no overflow for large n)."""
    return min(maximum, initial * 2.0 ** min(max(n, 0), 62))


def jittered(initial: float, maximum: float, n: int, jitter: float, r: float) -> float:
    """:func:`exponential` times ``1 - jitter * r``, ``r`` in [0, 1)."""
    return exponential(initial, maximum, n) * (1.0 - jitter * r)
