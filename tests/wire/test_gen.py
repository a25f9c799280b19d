"""The committed generated code matches the .proto (python -m stockade.wire.gen)."""

from __future__ import annotations

from stockade.wire import gen


def test_generated_code_is_not_stale() -> None:
    assert gen.stale() == [], "run: python -m stockade.wire.gen"


def test_stale_check_notices_a_change(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path))
    (root / "stockade" / "v1").mkdir(parents=True)
    for name in gen.OUTPUTS:
        (root / "stockade" / "v1" / name).write_text((gen.ROOT / "stockade" / "v1" / name).read_text())
    (root / "stockade" / "v1" / "stockade_pb2.py").write_text("# edited by hand\n")
    assert gen.stale(root) == ["stockade/v1/stockade_pb2.py"]
