"""The fault tests' fixture: a :class:`~tests.faults.faultlab.FaultLab`,
always torn down, with a check that nothing of it is left behind (no lab
namespace, no run file, no trace in the machine's own namespace)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.lab.conftest import leftovers, root_namespace_traces

from .faultlab import FaultLab, open_lab


@pytest.fixture
async def faultlab() -> AsyncIterator[FaultLab]:
    async with open_lab() as fl:
        runid = fl.run.lab.runid
        yield fl
    assert leftovers(runid) == []
    assert root_namespace_traces() == []
