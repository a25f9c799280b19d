"""The ``stockade`` command: a thin dispatcher to each subcommand's module.

Each subcommand lives in the module that owns its job and exposes
``main(argv: list[str]) -> int``.  Modules are imported lazily so that the
node agent never imports the controller's dependencies (kubernetes-asyncio
costs about 50 MB of memory).
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("controller.evaluate_cli", "decide policy cases from the model alone (no kernel)"),
    "lab": ("stockade.lab.cli", "build a cluster of network namespaces; run cases against it; demo; clean"),
    "demo": ("stockade.lab.demo", "the lab demo: a 3-node cluster enforcing the recipes (README's main command)"),
    "controller": ("controller.main", "run the controller (watches, engine, gRPC, status page)"),
    "agent": ("nodeagent.main", "run the node agent, or `agent cleanup` to remove everything it owns"),
    "kube-emulator": ("stockade.kubeemu.main", "run the Kubernetes API emulator (tests, lab, demo)"),
}


def usage() -> str:
    lines = ["usage: stockade COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    if args[0] in ("--version", "version"):
        from stockade import __version__

        print(__version__)
        return 0
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(f"stockade: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(entry[0])
    rc: int = module.main(args[1:])
    return rc


if __name__ == "__main__":
    sys.exit(main())
