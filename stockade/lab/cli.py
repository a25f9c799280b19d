"""``stockade lab run|up|clean``: the lab's command line.

* ``run CASE_OR_DIR...`` -- build a lab per case, run it through the real
  pipeline, print the result document (``stockade.lab.runner``);
* ``up`` -- build a bare lab (nodes, a few echo pods, an outside host;
  ``--pipeline`` adds the emulator, controller and agents, their channel
  TLS + agent tokens unless ``--insecure-grpc``), print its
  namespaces and wait for Ctrl-C / SIGTERM; for poking around by hand;
* ``clean`` -- remove leftovers of killed runs (``stockade.lab.cleanup``).

Only argument parsing and process-level plumbing (signals, exit codes) live
here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

INSECURE_HELP = ("plaintext controller-agent channel without agent tokens (default: TLS with the "
                 "controller's own CA, agents admitted by pod-bound tokens, as in a real cluster)")


def _need_root() -> bool:
    if os.geteuid() != 0:
        print("stockade lab: needs root (network namespaces)", file=sys.stderr)
        return False
    return True


def run_cancellable(make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()`` on a fresh loop; SIGINT/SIGTERM cancel it (so every
    ``finally`` runs and the lab is torn down) and exit non-zero."""
    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        fired: list[int] = []

        def on_signal(sig: int) -> None:
            if not fired:  # a second Ctrl-C must not interrupt the teardown
                fired.append(sig)
                print("\nstockade lab: tearing down...", file=sys.stderr, flush=True)
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await make()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    return asyncio.run(main())


async def _up(nodes: int, mode: str, pods_per_node: int, with_pipeline: bool, insecure: bool = False) -> int:
    from stockade.case_addresses import gateway_ip
    from stockade.lab.cluster import Lab
    from stockade.lab.topology import External

    lab = Lab(nodes, mode, (External("internet", "192.0.2.10"),))  # type: ignore[arg-type]
    pipe = None
    try:
        await lab.up()
        for i in range(nodes):
            for k in range(pods_per_node):
                ip = gateway_ip(i).rsplit(".", 1)[0] + f".{k + 2}"
                await lab.add_pod(f"default/pod-{i}-{k}", i, ip, False, [(80, "TCP"), (53, "UDP")])
        await lab.serve_external("internet", [(80, "TCP"), (53, "UDP")])
        info: dict[str, object] = {"runid": lab.runid, "namespaces": lab.state.namespaces,
                                   "pods": {k: p.ip for k, p in lab.pods.items()}}
        if with_pipeline:
            from stockade import cases
            from stockade.lab import processes
            from stockade.lab.pipeline import Pipeline, local_kubeconfig

            pipe = Pipeline(lab, insecure=insecure)
            await pipe.start()
            status = await pipe.forward(processes.CONTROLLER_HTTP)
            api = await pipe.forward(processes.EMULATOR_PORT)
            assert pipe.kubeconfig is not None
            kc = os.path.join(pipe.workdir, "kubeconfig-local")
            with open(kc, "w") as f:
                f.write(local_kubeconfig(pipe.kubeconfig, api.local))
            # the nodes only: pods in the lab are not known to the API (add your own with kubectl)
            nodes_ops = [cases.ObjectOp("Node", "", cases.node_name(i), cases.node_object(i)) for i in range(nodes)]
            await pipe.wait_converged(await pipe.write(nodes_ops))
            info.update({"status": f"http://{status.local}/", "kubeconfig": kc})
        print(json.dumps(info), flush=True)
        print("ready (Ctrl-C tears the lab down)", file=sys.stderr, flush=True)
        await asyncio.Event().wait()
        return 0
    finally:
        if pipe is not None:
            await pipe.close()
        await lab.down()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="stockade lab", description="A cluster of network namespaces running the real pipeline: run policy cases in it, build one by hand, clean up.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run cases in a lab; print the result document")
    r.add_argument("cases", nargs="+", metavar="CASE_OR_DIR")
    r.add_argument("--mode", choices=("bridged", "routed"), default="bridged")
    r.add_argument("--probe-timeout", type=float, default=1.0, help="seconds before a probe counts as denied")
    r.add_argument("--keep-logs", action="store_true", help="copy process logs to /tmp/stockade-lab-logs/RUNID")
    r.add_argument("--isolate", action="store_true",
                   help="a fresh lab and pipeline for every case (default: cases with the same nodes and "
                        "outside hosts share one, emptied between cases)")
    r.add_argument("--insecure-grpc", action="store_true", help=INSECURE_HELP)
    u = sub.add_parser("up", help="build a bare lab and wait (Ctrl-C tears it down)")
    u.add_argument("--nodes", type=int, default=2)
    u.add_argument("--mode", choices=("bridged", "routed"), default="bridged")
    u.add_argument("--pods-per-node", type=int, default=2)
    u.add_argument("--pipeline", action="store_true",
                   help="also run the API emulator, controller and agents (status page and API on 127.0.0.1)")
    u.add_argument("--insecure-grpc", action="store_true", help=INSECURE_HELP)
    c = sub.add_parser("clean", help="remove leftovers of killed lab runs")
    c.add_argument("--force", action="store_true", help="also runs whose owner is still alive")
    args = ap.parse_args(argv)
    if not _need_root():
        return 2
    if args.cmd == "clean":
        from stockade.lab.cleanup import clean

        rep = clean(force=args.force)
        print(json.dumps({"namespaces": rep.namespaces, "processes": rep.processes,
                          "skipped_live_runs": rep.skipped_runs}))
        return 0
    if args.cmd == "up":
        try:
            return run_cancellable(lambda: _up(args.nodes, args.mode, args.pods_per_node, args.pipeline,
                                               args.insecure_grpc))
        except asyncio.CancelledError:
            return 130
    from stockade.lab.runner import run_paths

    try:
        return run_cancellable(lambda: run_paths(args.cases, args.mode, args.probe_timeout, args.keep_logs,
                                                    args.isolate, args.insecure_grpc))
    except asyncio.CancelledError:
        print("stockade lab run: interrupted; lab torn down", file=sys.stderr)
        return 130
