from __future__ import annotations

from stockade.identity_cache import IdentityCache


def test_the_same_object_hits_an_equal_one_does_not_and_a_full_cache_starts_over() -> None:
    made: list[tuple[str, ...]] = []

    def make(k: tuple[str, ...]) -> int:
        made.append(k)
        return len(made)

    c: IdentityCache[tuple[str, ...], int] = IdentityCache(2)
    a, b = ("x", "y"), tuple(["x", "y"])  # equal, not the same object
    assert a == b and a is not b
    assert c.get(a, make) == 1 and c.get(a, make) == 1
    assert c.get(b, make) == 2 and len(c) == 2
    assert c.get(("z",), make) == 3 and len(c) == 1, "full: dropped everything, then kept the new one"
    assert c.get(a, make) == 4
