"""``stockade controller``: parse flags, run the controller until a signal.

Lifecycle: parse settings (bad flags: exit 2 with the flag named), set up
logging, install uvloop when available, start :class:`controller.runtime.Controller`,
then wait for SIGTERM/SIGINT or for a root task to die.  On a signal the
controller stops in its documented, bounded order and the process exits 0;
if a root task died (a broken invariant in the engine, say) it stops the
same way and exits 1, so Kubernetes restarts it.  A second signal while
stopping exits at once (status 130).

This module only sequences the process; the pipeline is wired in
``controller.runtime``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from controller.settings import Settings, SettingsError, parse_args

log = logging.getLogger("stockade.controller")


async def run(settings: Settings) -> int:
    from controller.runtime import Controller

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals: list[int] = []

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal %s while stopping: exiting now", signal.Signals(signum).name)
            os._exit(130)
        log.info("received %s: shutting down", signal.Signals(signum).name)
        signals.append(signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    ctl = Controller(settings)
    rc = 0
    try:
        try:
            await ctl.start()
        except Exception as e:
            log.error("controller failed to start: %s", e if isinstance(e, RuntimeError | OSError) else
                      f"{type(e).__name__}: {e}")
            await ctl.stop()
            return 2 if isinstance(e, SettingsError) else 1
        stopper = asyncio.create_task(stop.wait(), name="stockade-signal")
        dead = asyncio.create_task(ctl.wait(), name="stockade-root-watch")
        done, _ = await asyncio.wait({stopper, dead}, return_when=asyncio.FIRST_COMPLETED)
        if dead in done:
            task = dead.result()
            exc = task.exception() if not task.cancelled() else None
            log.error("root task %s ended (%s): stopping", task.get_name(),
                      f"{type(exc).__name__}: {exc}" if exc else "cancelled")
            rc = 1
        for t in (stopper, dead):
            t.cancel()
        await ctl.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return rc


def main(argv: list[str]) -> int:
    try:
        settings = parse_args(argv)
    except SettingsError as e:
        print(f"stockade controller: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
    except ImportError:
        return asyncio.run(run(settings))
    rc: int = uvloop.run(run(settings))
    return rc
