"""``stockade agent``: run the node agent; ``stockade agent cleanup``: remove what it owns.

    stockade agent --node-name NAME --controller HOST:PORT [--controller HOST:PORT ...]
                   [--grpc-listen 0.0.0.0:7702] [--http-listen 0.0.0.0:7703]
                   [--iptables-backend auto|nft|legacy|python-iptables]
                   [--reconcile-period SECONDS] [--state-dir /var/lib/stockade] [--bridged]
                   [--ca-file PATH [--server-name NAME]] [--token-file PATH] [--insecure-grpc]
    stockade agent cleanup [--iptables-backend ...] [--state-dir DIR]

``--node-name`` defaults to ``$NODE_NAME`` (the DaemonSet sets it from the
downward API).  ``--controller`` is repeatable; a DNS name with several
addresses (a headless Service) counts as several controllers.  SIGTERM or
SIGINT stops the agent gracefully within a bounded time and leaves the
kernel exactly as it is (fail-static); only ``cleanup`` removes rules.
With ``--ca-file`` the controller channel is TLS, verified against that
bundle; the token in ``--token-file`` (re-read at every connect) proves
the node to a controller running ``--auth tokenreview``
(``nodeagent.channel_auth``).  ``--kernel fake`` runs against an in-memory kernel (tests, benchmarks,
demos without root).

This module parses flags, sets up logging and signals, and hands over to
``nodeagent.service``; it holds no logic of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from typing import Any

BACKENDS = ("auto", "nft", "legacy", "python-iptables")
DEFAULT_TOKEN_FILE = "/var/run/secrets/stockade/token"  # nodeagent.channel_auth.DEFAULT_TOKEN_FILE
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stockade agent", description="Stockade node agent.")
    p.add_argument("--node-name", default=os.environ.get("NODE_NAME", ""),
                   help="this node's name (default: $NODE_NAME)")
    p.add_argument("--controller", action="append", default=[], metavar="HOST:PORT",
                   help="controller gRPC address; repeatable (default port 7700)")
    p.add_argument("--grpc-listen", default="0.0.0.0:7702", metavar="HOST:PORT",
                   help="agent gRPC: health, reflection, debug (default 0.0.0.0:7702)")
    p.add_argument("--http-listen", default="0.0.0.0:7703", metavar="HOST:PORT",
                   help="agent HTTP: /healthz, /metrics (default 0.0.0.0:7703)")
    p.add_argument("--iptables-backend", default="auto", choices=BACKENDS)
    p.add_argument("--reconcile-period", type=float, default=60.0, metavar="SECONDS",
                   help="seconds between full re-reads of the kernel (drift repair; default 60)")
    p.add_argument("--state-dir", default="/var/lib/stockade", metavar="DIR",
                   help="where the last applied state is kept (default /var/lib/stockade)")
    p.add_argument("--bridged", action="store_true", help="pods sit on a Linux bridge (kubenet): check br_netfilter")
    p.add_argument("--shutdown-timeout", type=float, default=5.0, metavar="SECONDS")
    p.add_argument("--ca-file", default="", metavar="PATH",
                   help="verify the controller's TLS certificate with this CA bundle (default: plaintext)")
    p.add_argument("--server-name", default="", metavar="NAME",
                   help="name the controller's certificate must carry (default: the first --controller host)")
    p.add_argument("--token-file", default=DEFAULT_TOKEN_FILE, metavar="PATH",
                   help=f"projected ServiceAccount token sent to the controller (default {DEFAULT_TOKEN_FILE})")
    p.add_argument("--insecure-grpc", action="store_true", help="plaintext channel even with --ca-file")
    p.add_argument("--kernel", choices=("real", "fake"), default="real",
                   help="fake: an in-memory kernel (tests, demos without root)")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def _cleanup_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stockade agent cleanup",
                                description="Remove every STOCKADE-* chain, its hooks and every stk* ipset.")
    p.add_argument("--iptables-backend", default="auto", choices=BACKENDS)
    p.add_argument("--state-dir", default="/var/lib/stockade", metavar="DIR")
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """Flags -> namespace; argparse exits 2 with a message naming the bad flag."""
    p = _parser()
    a = p.parse_args(argv)
    if not a.node_name:
        p.error("--node-name is required (or set NODE_NAME)")
    if not a.controller:
        p.error("at least one --controller HOST:PORT is required")
    from stockade.wire.grpcutil import parse_hostport

    for flag, values in (("--controller", a.controller), ("--grpc-listen", [a.grpc_listen]),
                         ("--http-listen", [a.http_listen])):
        for v in values:
            try:
                parse_hostport(v, 7700 if flag == "--controller" else None)
            except ValueError as e:
                p.error(f"{flag}: {e}")
    if a.reconcile_period <= 0:
        p.error("--reconcile-period must be > 0")
    return a


def channel_security(a: argparse.Namespace) -> Any:
    """The agent's ``nodeagent.channel_auth.ChannelSecurity`` from its flags:
    TLS with ``--ca-file`` (unless ``--insecure-grpc``), verified against
    ``--server-name`` or else the first ``--controller`` host (the agent
    dials resolved addresses, so the name is given explicitly)."""
    from nodeagent.channel_auth import ChannelSecurity
    from stockade.wire.grpcutil import parse_hostport

    tls = bool(a.ca_file) and not a.insecure_grpc
    server_name = a.server_name or (parse_hostport(a.controller[0], 7700)[0] if tls and a.controller else "")
    return ChannelSecurity(ca_file=a.ca_file if tls else "", server_name=server_name if tls else "",
                           token_file=a.token_file)


def _kernel(kind: str) -> Any:
    if kind == "fake":
        from nodeagent.fake_kernel import FakeKernel

        return FakeKernel()
    from nodeagent.kernel import SubprocessKernel

    return SubprocessKernel()


async def run_agent(a: argparse.Namespace) -> int:
    from nodeagent.dataplane import DataplaneSettings
    from nodeagent.service import AgentService, AgentSettings

    settings = AgentSettings(
        node=a.node_name, controllers=list(a.controller), grpc_listen=a.grpc_listen,
        http_listen=a.http_listen, shutdown_timeout=a.shutdown_timeout, security=channel_security(a),
        dataplane=DataplaneSettings(backend=a.iptables_backend, reconcile_period=a.reconcile_period,
                                    state_dir=a.state_dir, bridged=a.bridged))
    svc = AgentService(settings, kernel=_kernel(a.kernel))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await svc.start()
    except OSError as e:
        logging.getLogger("stockade.agent").error("cannot start: %s", e)
        await svc.stop()
        return EXIT_FAILED
    stopper = asyncio.create_task(stop.wait(), name="agent-signal")
    crashed = asyncio.create_task(svc.wait(), name="agent-watch")
    done, _ = await asyncio.wait({stopper, crashed}, return_when=asyncio.FIRST_COMPLETED)
    rc = EXIT_OK
    if crashed in done:
        t = crashed.result()
        logging.getLogger("stockade.agent").error("task %s ended unexpectedly: %r", t.get_name(),
                                                  t.exception() if not t.cancelled() else "cancelled")
        rc = EXIT_FAILED
    logging.getLogger("stockade.agent").info("stopping (the kernel keeps enforcing)")
    stopper.cancel()
    crashed.cancel()
    try:
        await asyncio.wait_for(svc.stop(), settings.shutdown_timeout * 3 + 10)
    except TimeoutError:
        logging.getLogger("stockade.agent").error("shutdown took too long; exiting anyway")
        rc = EXIT_FAILED
    return rc


async def run_cleanup(a: argparse.Namespace) -> int:
    from nodeagent.dataplane import cleanup
    from nodeagent.kernel import SubprocessKernel

    flavours = {"auto": ("nft", "legacy"), "nft": ("nft",)}.get(a.iptables_backend, ("legacy",))
    summary = await cleanup(SubprocessKernel(), flavours)
    path = os.path.join(a.state_dir, "applied-state.json")
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
        summary["state_file_removed"] = path
    print(json.dumps(summary, sort_keys=True))
    return EXIT_FAILED if summary.get("errors") else EXIT_OK


def main(argv: list[str]) -> int:
    if argv and argv[0] == "cleanup":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return asyncio.run(run_cleanup(_cleanup_parser().parse_args(argv[1:])))
    a = parse(argv)
    logging.basicConfig(level=getattr(logging, a.log_level), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from nodeagent.loop_choice import install_loop

    try:
        loop = install_loop()
    except ValueError as e:
        print(f"stockade agent: {e}", file=sys.stderr)
        return EXIT_USAGE
    logging.getLogger("stockade.agent").debug("event loop: %s", loop)
    return asyncio.run(run_agent(a))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
