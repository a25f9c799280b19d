"""Which asyncio event loop the agent runs on, chosen by measurement.

The agent's hot path is spawning short commands (``ipset``,
``iptables-restore``, ``conntrack``) and piping restore input through them;
it has few sockets.  Measured on the lab machine (2 cores, Python 3.11,
``benchmarks/agent_bench.py --loops``): one ``create_subprocess_exec`` +
``communicate`` of ``true`` took 1.6-2.2 ms on the default loop and 8.9-12 ms
on uvloop; piping 2 MB through ``cat`` took 6.4-6.9 ms vs 20-44 ms.  (An
earlier measurement here: 1.2 vs 2.4 ms.)  So the agent uses the standard
loop; uvloop stays available behind ``STOCKADE_AGENT_LOOP=uvloop`` for
re-measuring on other hosts.

``nodeagent.main`` calls :func:`install_loop` before ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import os
import time

DEFAULT = "asyncio"


def chosen_loop() -> str:
    """``"asyncio"`` (default, by the figures above) or ``"uvloop"`` when
    ``STOCKADE_AGENT_LOOP=uvloop`` asks for it."""
    want = os.environ.get("STOCKADE_AGENT_LOOP", DEFAULT)
    if want not in ("asyncio", "uvloop"):
        raise ValueError(f"STOCKADE_AGENT_LOOP: unknown loop {want!r} (asyncio, uvloop)")
    return want


def install_loop() -> str:
    """Install the chosen loop policy; returns its name."""
    name = chosen_loop()
    if name == "uvloop":
        import uvloop

        uvloop.install()
    return name


async def spawn_cost(n: int = 100) -> float:
    """Mean milliseconds for one spawn + communicate of ``true`` on the
    running loop (used by the benchmark)."""
    t0 = time.perf_counter()
    for _ in range(n):
        p = await asyncio.create_subprocess_exec("true", stdin=asyncio.subprocess.DEVNULL,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await p.communicate()
    return (time.perf_counter() - t0) / n * 1000


async def pipe_cost(nbytes: int = 2_000_000) -> float:
    """Milliseconds to pipe ``nbytes`` through ``cat`` on the running loop."""
    t0 = time.perf_counter()
    p = await asyncio.create_subprocess_exec("cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    await p.communicate(b"x" * nbytes)
    return (time.perf_counter() - t0) * 1000
