"""The shared backoff arithmetic."""

from __future__ import annotations

import pytest

from stockade.backoff import exponential, jittered


@pytest.mark.parametrize(("n", "want"), [
    pytest.param(0, 0.5, id="first"),
    pytest.param(3, 4.0, id="doubles"),
    pytest.param(10, 30.0, id="capped"),
    pytest.param(5000, 30.0, id="huge-n-no-overflow"),
    pytest.param(-1, 0.5, id="negative-is-first"),
])
def test_exponential(n: int, want: float) -> None:
    assert exponential(0.5, 30.0, n) == want


def test_jitter_scales_down_by_at_most_the_jitter_fraction() -> None:
    assert jittered(1.0, 30.0, 2, 0.5, 0.0) == 4.0
    assert jittered(1.0, 30.0, 2, 0.5, 0.5) == 3.0
