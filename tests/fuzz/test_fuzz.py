"""Every fuzz target, short form: a fixed, derandomized budget per target (a few seconds each).

The long form, with a time budget per target and a report of executions,
crashes and the slowest input, is ``python benchmarks/fuzz_run.py``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.targets import TARGETS


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target(name: str) -> None:
    target = TARGETS[name]

    @settings(max_examples=target.ci_examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(target.strategy)
    def run(example: object) -> None:
        target.run(example)

    run()
