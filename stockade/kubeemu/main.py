"""``stockade kube-emulator``: run the Kubernetes API emulator as a process.

    stockade kube-emulator --listen 127.0.0.1:6443 --kubeconfig-out /tmp/kubeconfig --history 1000

Prints one line ``ready <url>`` on stdout once listening (the lab waits for
it), and shuts down gracefully on SIGTERM or SIGINT: watches end, the port
closes, exit code 0, within about a second.

Not here: anything but argument parsing, signals and the ready line.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from stockade.kubeemu.emulator import KubeEmulator


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stockade kube-emulator", description="Run the Kubernetes API emulator.")
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 6443), metavar="HOST:PORT",
                   help="address to listen on (port 0: any free port); default 127.0.0.1:6443")
    p.add_argument("--kubeconfig-out", metavar="PATH", help="write a kubeconfig for the emulator here")
    p.add_argument("--namespace", default="default", help="the kubeconfig context's namespace")
    p.add_argument("--history", type=int, default=1000, help="writes kept for watch resumption (default 1000)")
    p.add_argument("--bookmark-interval", type=float, default=60.0, help="seconds between watch bookmarks")
    return p


async def run(args: argparse.Namespace) -> int:
    host, port = args.listen
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    emu = KubeEmulator(host=host, port=port, history=args.history, bookmark_interval=args.bookmark_interval)
    await emu.start()
    try:
        if args.kubeconfig_out:
            emu.write_kubeconfig(args.kubeconfig_out, args.namespace)
        print(f"ready {emu.url}", flush=True)
        await stop.wait()
    finally:
        await emu.stop()
    return 0


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.history < 1:
        print("stockade kube-emulator: --history must be at least 1", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(args))
    except OSError as exc:
        print(f"stockade kube-emulator: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc}", file=sys.stderr)
        return 1
