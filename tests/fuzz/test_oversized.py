"""Oversized inputs: refused with a clear, short message, or handled within bounded time and memory.

Each test measures what it claims with ``tracemalloc`` (peak of the
allocations made by the call under test, the input being built before) and
``time.perf_counter``; the numbers in docs/reliability.md come from
``pytest -q tests/fuzz/test_oversized.py -s`` (each test prints its figures).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.parse import (
    MAX_LABEL_VALUE,
    MAX_POLICY_ENTRIES,
    MAX_POLICY_IPBLOCKS,
    ParseError,
    PolicyInvalid,
    parse_namespace,
    parse_pod,
    parse_policy,
)
from stockade import cases
from stockade.state import Chain, FamilyState, Hook, IPSet, NodeState, Rule, SetMatch, StateError
from stockade.wire.verify import validate_state

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result or raised exception, seconds, peak MiB allocated during the call)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        result: Any = fn()
    except Exception as e:  # returned for the caller to check
        result = e
    took = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / MiB
    tracemalloc.stop()
    return result, took, peak


def report(what: str, took: float, peak: float) -> None:
    print(f"\n[oversized] {what}: {took * 1000:.1f} ms, peak {peak:.3f} MiB")


def policy(ingress: list[Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "big", "namespace": "x"}, "spec": {"podSelector": {}, "ingress": ingress}}


def ip_blocks(n: int) -> list[dict[str, Any]]:
    return [{"ipBlock": {"cidr": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32"}} for i in range(n)]


# --------------------------------------------------------------------------
# policies


def test_policy_with_100000_ip_blocks_is_refused_before_parsing_them() -> None:
    obj = policy([{"from": ip_blocks(100_000)}])
    e, took, peak = measure(lambda: parse_policy(obj))
    report("policy with 100,000 ipBlocks (refused)", took, peak)
    assert isinstance(e, PolicyInvalid)
    assert e.errors == [f"spec.ingress[0].from: the policy has more than {MAX_POLICY_IPBLOCKS} ipBlock peers "
                        "(more than etcd's 1572864-byte object limit can hold)"]
    assert took < 0.5 and peak < 1


def test_ip_block_limit_counts_across_rules() -> None:
    half = MAX_POLICY_IPBLOCKS // 2 + 1
    e, _, _ = measure(lambda: parse_policy(policy([{"from": ip_blocks(half)}, {"from": ip_blocks(half)}])))
    assert isinstance(e, PolicyInvalid) and e.errors[0].startswith("spec.ingress[1].from: the policy has more than")


def test_policy_with_5000_ip_blocks_parses_in_linear_time_and_memory() -> None:
    """Below the limit the policy is parsed; the per-ipBlock cost gives the figure at the limit."""
    obj = policy([{"from": ip_blocks(5000)}])
    pol, took, peak = measure(lambda: parse_policy(obj))
    report("policy with 5,000 ipBlocks (parsed)", took, peak)
    assert not isinstance(pol, Exception), pol
    assert len(pol.ingress[0].peers) == 5000
    assert peak < 10 and took < 5


def test_policy_past_the_list_entry_limit_is_refused() -> None:
    port = {"protocol": "TCP", "port": 80}
    obj = policy([{"ports": [port] * (MAX_POLICY_ENTRIES + 10)}])
    e, took, peak = measure(lambda: parse_policy(obj))
    report(f"policy with {MAX_POLICY_ENTRIES + 10:,} ports (refused)", took, peak)
    assert isinstance(e, PolicyInvalid) and len(e.errors) == 1
    assert e.errors[0].startswith(f"spec.ingress[0].ports: {MAX_POLICY_ENTRIES + 10} entries take the policy past "
                                  f"{MAX_POLICY_ENTRIES} list entries")
    assert took < 0.5 and peak < 1


def test_a_policy_with_100000_bad_entries_lists_100_and_counts_the_rest() -> None:
    obj = policy([{"ports": [{"port": 0}] * 100_000}])
    e, took, peak = measure(lambda: parse_policy(obj))
    report("policy with 100,000 invalid ports", took, peak)
    assert isinstance(e, PolicyInvalid)
    assert len(e.errors) == 101 and e.errors[-1] == "... and 99900 more problems"
    assert len(str(e)) < 10_000 and took < 5


MEGABYTE = "v" * 1_000_000


@pytest.mark.parametrize("where, obj, field", [
    pytest.param("matchLabels", {"metadata": {"name": "p"}, "spec": {"podSelector": {"matchLabels": {"app": MEGABYTE}}}},
                 "spec.podSelector.matchLabels[app]", id="matchLabels"),
    pytest.param("matchExpressions", {"metadata": {"name": "p"}, "spec": {"podSelector": {"matchExpressions": [
        {"key": "app", "operator": "In", "values": [MEGABYTE]}]}}},
                 "spec.podSelector.matchExpressions[0].values[0]", id="matchExpressions"),
    pytest.param("metadata.labels", {"metadata": {"name": "p", "labels": {"a": MEGABYTE}}}, "metadata.labels[a]",
                 id="policy-labels"),
    pytest.param("label key", {"metadata": {"name": "p"}, "spec": {"podSelector": {"matchLabels": {MEGABYTE: "a"}}}},
                 "spec.podSelector.matchLabels[" + "v" * 80 + "... (1000000 characters)]", id="label-key"),
    pytest.param("name", {"metadata": {"name": MEGABYTE}}, "metadata.name", id="name"),
])
def test_a_megabyte_label_value_in_a_policy_gives_a_short_error(where: str, obj: Any, field: str) -> None:
    e, took, peak = measure(lambda: parse_policy(obj))
    report(f"policy with a 1 MB {where}", took, peak)
    assert isinstance(e, PolicyInvalid)
    assert e.errors[0].startswith(f"{field}: "), e.errors[0][:300]
    assert "(1000000 characters)" in e.errors[0]
    assert len(str(e)) < 1000 and "v" * 100 not in str(e)
    assert took < 0.5 and peak < 3  # the value itself is never copied


@pytest.mark.parametrize("parse, obj", [
    pytest.param(parse_pod, {"metadata": {"name": "a", "labels": {"app": MEGABYTE}}}, id="pod"),
    pytest.param(parse_namespace, {"metadata": {"name": "a", "labels": {"app": MEGABYTE}}}, id="namespace"),
])
def test_a_megabyte_label_value_on_a_pod_or_namespace_is_refused_shortly(parse: Any, obj: Any) -> None:
    e, took, peak = measure(lambda: parse(obj))
    report(f"{parse.__name__} with a 1 MB label value", took, peak)
    assert isinstance(e, ParseError)
    assert e.field == "metadata.labels[app]"
    assert str(e) == f"metadata.labels[app]: label value of 1000000 characters is longer than {MAX_LABEL_VALUE}"
    assert took < 0.1 and peak < 0.1


# --------------------------------------------------------------------------
# a node state with a 1,000,000-member set (what the agent receives)


@pytest.fixture(scope="module")
def million() -> frozenset[str]:
    return frozenset([f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(1_000_000)])


def big_state(members: frozenset[str]) -> NodeState:
    sets = {"stk-big": IPSet("stk-big", "hash:ip", "inet", members)}
    v4 = FamilyState({"STOCKADE-FWD": Chain("STOCKADE-FWD", (Rule("DROP", sets=(SetMatch("stk-big", ("src",)),)),))},
                     (Hook("FORWARD", "STOCKADE-FWD"),))
    return NodeState("n1", sets, v4)


def test_the_agent_checks_a_1000000_member_set_in_bounded_time_and_memory(million: frozenset[str]) -> None:
    state = big_state(million)
    r, took, peak = measure(lambda: validate_state(state))
    report("wire.verify.validate_state, 1,000,000 members (accepted)", took, peak)
    assert not isinstance(r, Exception), r
    assert peak < 5 and took < 10


def test_a_bad_member_in_a_1000000_member_set_is_named_shortly(million: frozenset[str]) -> None:
    state = big_state(million | {"10.0.0.256"})
    t0 = time.perf_counter()
    with pytest.raises(StateError) as ei:
        validate_state(state)
    report("wire.verify.validate_state, 1,000,000 members + 1 bad (refused)", time.perf_counter() - t0, 0.0)
    assert str(ei.value).startswith("sets['stk-big'].members: '10.0.0.256' is not a valid hash:ip inet member")
    assert len(str(ei.value)) < 300


# --------------------------------------------------------------------------
# case files


def test_a_100_mb_case_file_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as fh:
        fh.truncate(100 * MiB)  # sparse: 100 MB long, nothing written
    items, took, peak = measure(lambda: cases.load_each([big]))
    report("100 MB case file (refused)", took, peak)
    (e,) = items
    assert isinstance(e, cases.CaseError) and e.file == str(big) and e.field == ""
    assert e.message == f"file of {100 * MiB} bytes is larger than the {cases.MAX_CASE_BYTES}-byte limit for case files"
    assert took < 0.1 and peak < 0.1


def test_a_device_without_a_size_is_cut_off_at_the_limit() -> None:
    items, took, peak = measure(lambda: cases.load_each(["/dev/zero"]))
    report("/dev/zero as a case file (refused)", took, peak)
    (e,) = items
    assert isinstance(e, cases.CaseError)
    assert e.message == f"more than the {cases.MAX_CASE_BYTES}-byte limit for case files"
    assert peak < cases.MAX_CASE_BYTES / MiB + 2


@pytest.mark.parametrize("depth, message", [
    pytest.param(100, f"nested more than {cases.MAX_NESTING} levels deep", id="over-the-limit"),
    pytest.param(100_000, "not usable JSON: RecursionError", id="past-the-json-parser"),
])
def test_deeply_nested_case_files_are_refused(tmp_path: Path, depth: int, message: str) -> None:
    f = tmp_path / "deep.json"
    f.write_text('{"name": "d", "notes": ' + "[" * depth + "]" * depth + "}")
    (e,) = cases.load_each([f])
    assert isinstance(e, cases.CaseError) and e.message.startswith(message), e


def test_stockade_evaluate_refuses_a_100_mb_file_with_exit_2_and_no_traceback(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as fh:
        fh.truncate(100 * MiB)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "stockade", "evaluate", str(big)], capture_output=True, text=True,
                       timeout=60, env=env, cwd=ROOT)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    assert f"{big}: <file>: file of {100 * MiB} bytes is larger than the" in p.stderr
