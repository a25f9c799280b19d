"""Regenerate (or check) the protobuf/gRPC code in ``stockade/v1`` from ``proto/``.

``python -m stockade.wire.gen`` rewrites ``stockade/v1/stockade_pb2.py``,
``stockade_pb2.pyi`` and ``stockade_pb2_grpc.py``; ``--check`` generates
into a temporary directory and exits 1 naming every stale file, so a test
can fail when someone edits the ``.proto`` and forgets to regenerate.

It does not install grpcio-tools (a test dependency) and it does not touch
anything outside ``stockade/v1``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
PROTOS = ("stockade/v1/stockade.proto",)
OUTPUTS = ("stockade_pb2.py", "stockade_pb2.pyi", "stockade_pb2_grpc.py")


def generate(out: Path) -> None:
    """Run protoc (from grpcio-tools) with ``out`` as the output root."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    for proto in PROTOS:
        args = ["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--pyi_out={out}",
                f"--grpc_python_out={out}", str(PROTO_DIR / proto)]
        rc = protoc.main(args)
        if rc != 0:
            raise RuntimeError(f"protoc failed ({rc}) for {proto}")


def stale(root: Path = ROOT) -> list[str]:
    """Names of generated files under ``root/stockade/v1`` that differ from fresh output."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        bad = []
        for name in OUTPUTS:
            fresh = (Path(tmp) / "stockade" / "v1" / name).read_text()
            cur = root / "stockade" / "v1" / name
            if not cur.exists() or cur.read_text() != fresh:
                bad.append(str(cur.relative_to(root)))
        return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stockade.wire.gen", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if the committed code is stale")
    a = p.parse_args(argv)
    if a.check:
        bad = stale()
        for b in bad:
            print(f"stale generated file: {b} (run: python -m stockade.wire.gen)", file=sys.stderr)
        return 1 if bad else 0
    generate(ROOT)
    print("generated: " + ", ".join(f"stockade/v1/{n}" for n in OUTPUTS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
