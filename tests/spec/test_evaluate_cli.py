"""``stockade evaluate``: the shared recipes pass through the real command;
exit codes, stderr reports and the result document on crafted cases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller import evaluate_cli

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO.parent / "shared" / "cases" / "recipes"


def test_recipes_pass_via_cli() -> None:
    if not RECIPES.is_dir():
        pytest.skip(f"shared cases not found at {RECIPES}")
    proc = subprocess.run([sys.executable, "-m", "stockade", "evaluate", str(RECIPES)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["mode"] == "evaluate"
    assert len(doc["cases"]) == len(list(RECIPES.glob("*.json"))) == 18
    assert doc["failed"] == 0 and doc["passed"] == 82
    assert "DISAGREEMENT" not in proc.stderr and "warning" not in proc.stderr
    files = sorted(RECIPES.glob("*.json"))  # a folder runs its files in sorted order
    assert [c["name"] for c in doc["cases"]] == [json.loads(f.read_text())["name"] for f in files]
    first = doc["cases"][0]["results"][0]
    assert set(first) == {"step", "from", "to", "port", "protocol", "expect", "observed"}


def case(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "crafted",
        "nodes": 2,
        "namespaces": {"default": {"labels": {"kubernetes.io/metadata.name": "default"}},
                       "x": {"labels": {"kubernetes.io/metadata.name": "x"}}},
        "pods": [
            {"namespace": "x", "name": "web", "labels": {"app": "web"}, "ports": [{"port": 80, "name": "http"}]},
            {"namespace": "x", "name": "cli", "labels": {"app": "cli"}},
            {"namespace": "default", "name": "other", "labels": {"app": "cli"}},
            {"namespace": "x", "name": "agent", "labels": {}, "hostNetwork": True, "node": 1},
        ],
        "external": [{"name": "net", "ip": "192.0.2.10", "ports": [{"port": 80}]}],
        "policies": [
            {"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1",
             "metadata": {"name": "web", "namespace": "x"},
             "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                      "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "cli"}}},
                                            {"ipBlock": {"cidr": "{{ip external:net}}/32"}}],
                                   "ports": [{"port": "http"}]}]}},
            {"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1",
             "metadata": {"name": "broken", "namespace": "x"},
             "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16",
                                                                             "except": ["10.1.0.0/16"]}}]}]}},
        ],
        "probes": [
            {"from": "x/cli", "to": "x/web", "port": 80, "protocol": "TCP", "expect": "allow"},
            {"from": "default/other", "to": "x/web", "port": 80, "protocol": "TCP", "expect": "deny"},
            {"from": "external:net", "to": "x/web", "port": 80, "protocol": "TCP", "expect": "allow"},
            {"from": "x/agent", "to": "x/web", "port": 80, "protocol": "TCP", "expect": "deny"},
            {"from": "x/web", "to": "x/cli", "port": 80, "protocol": "TCP", "expect": "allow"},
        ],
        "steps": [
            {"name": "relabel cli", "actions": [{"label-pod": {"pod": "x/cli", "labels": {"app": "gone"}}}],
             "probes": [{"from": "x/cli", "to": "x/web", "port": 80, "protocol": "TCP", "expect": "deny"}]},
            {"name": "new pod, policy removed", "actions": [
                {"create-pod": {"namespace": "x", "name": "new", "labels": {"app": "cli"}}},
                {"delete": {"kind": "NetworkPolicy", "namespace": "x", "name": "web"}},
                {"apply": {"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1",
                           "metadata": {"name": "only-new", "namespace": "x"},
                           "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                                    "ingress": [{"from": [{"ipBlock": {"cidr": "{{ip x/new}}/32"}}]}]}}}],
             "probes": [{"from": "x/new", "to": "x/web", "port": 80, "protocol": "TCP", "expect": "allow"},
                        {"from": "external:net", "to": "x/web", "port": 80, "protocol": "TCP", "expect": "deny"}]},
        ],
    }
    doc.update(over)
    return doc


def run(capsys: pytest.CaptureFixture[str], *paths: Path, extra: tuple[str, ...] = ()) -> tuple[int, Any, str]:
    rc = evaluate_cli.main([*extra, *map(str, paths)])
    out, err = capsys.readouterr()
    return rc, json.loads(out), err


def test_crafted_case_with_steps_and_invalid_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "c.json"
    p.write_text(json.dumps(case()))
    rc, doc, err = run(capsys, p)
    assert rc == 0, err
    assert doc["passed"] == 8 and doc["failed"] == 0
    steps = [r["step"] for r in doc["cases"][0]["results"]]
    assert steps == [None] * 5 + ["relabel cli", "new pod, policy removed", "new pod, policy removed"]
    # the invalid policy is reported with its field path and affects nothing else
    assert "NetworkPolicy x/broken is invalid and not applied" in err
    assert "spec.ingress[0].from[0].ipBlock.except[0]: 10.1.0.0/16 is not within cidr 10.0.0.0/16" in err


def test_failed_expectation_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = case()
    doc["probes"][1]["expect"] = "allow"
    p = tmp_path / "c.json"
    p.write_text(json.dumps(doc))
    rc, out, _ = run(capsys, p)
    assert rc == 1
    assert out["failed"] == 1 and out["cases"][0]["results"][1]["observed"] == "deny"


def test_unusable_file_exits_2_others_still_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.json").write_text(json.dumps(case()))
    bad = case()
    bad["pods"][0]["ports"][0]["port"] = "eighty"
    (tmp_path / "b.json").write_text(json.dumps(bad))
    rc, doc, err = run(capsys, tmp_path)
    assert rc == 2
    assert [c["name"] for c in doc["cases"]] == ["crafted"]
    assert f"{tmp_path / 'b.json'}: pods[0].ports[0].port: must be an integer, not 'eighty'" in err


def test_disagreement_fails_loudly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    orig = evaluate_cli.Compiled.decide

    def inverted(self: evaluate_cli.Compiled, *a: Any) -> bool:
        return not orig(self, *a)

    monkeypatch.setattr(evaluate_cli.Compiled, "decide", inverted)
    p = tmp_path / "c.json"
    p.write_text(json.dumps(case(steps=[])))
    rc, doc, err = run(capsys, p)
    assert rc == 1
    # (b) is what gets reported
    assert [r["observed"] for r in doc["cases"][0]["results"]] == ["deny", "allow", "deny", "allow", "deny"]
    assert ("DISAGREEMENT in case crafted (top-level, probes[0]): x/cli -> x/web 80/TCP: walker says deny, "
            "oracle says allow") in err
    assert "oracle ingress: allowed by x/web ingress[0]" in err


def test_oracle_only_and_explain_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "c.json"
    p.write_text(json.dumps(case()))
    rc, doc, err = run(capsys, p, extra=("--oracle-only", "--explain"))
    assert rc == 0 and doc["passed"] == 8
    assert ("crafted (top-level, probes[1]): deny default/other (198.18.0.3) -> x/web (198.18.0.2) 80/TCP: "
            "egress: no policy isolates default/other for egress; ingress: isolated by x/web; "
            "no ingress rule matches") in err


def test_compiled_path_failure_is_loud(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: evaluate_cli.Compiled, *a: Any) -> bool:
        raise ValueError("jump to a missing chain")

    monkeypatch.setattr(evaluate_cli.Compiled, "decide", broken)
    p = tmp_path / "c.json"
    p.write_text(json.dumps(case(steps=[])))
    rc, doc, err = run(capsys, p)
    assert rc == 1 and doc["failed"] == 5
    assert doc["cases"][0]["results"][0]["error"] == "compiled path failed: jump to a missing chain"
    assert "case crafted (probes[0]): the compiled path failed: ValueError: jump to a missing chain" in err


SPEC_CASES = Path(__file__).resolve().parent / "cases"


def test_spec_cases_pass_and_compiled_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    """tests/spec/cases: one case per area of the spec, with steps; the
    compiled rules (engine + walker) must agree with the oracle on all."""
    rc, doc, err = run(capsys, SPEC_CASES)
    assert rc == 0, err
    assert "DISAGREEMENT" not in err and "warning" not in err
    assert [c["name"] for c in doc["cases"]] == ["spec-ipblocks", "spec-lifecycle", "spec-policy-types",
                                                 "spec-ports", "spec-selectors"]
    assert doc["failed"] == 0 and doc["passed"] == 73
    expects = [r["expect"] for c in doc["cases"] for r in c["results"]]
    assert expects.count("allow") >= 30 and expects.count("deny") >= 30  # a no-op enforcer fails many


def test_invalid_replacement_keeps_the_old_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The API server rejects an invalid update: the stored policy stays."""
    broken = {"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1",
              "metadata": {"name": "web", "namespace": "x"},
              "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                       "ingress": [{"ports": [{"port": 80, "endPort": 70}]}]}}
    doc = case(steps=[{"name": "bad update", "actions": [{"apply": broken}],
                       "probes": [{"from": "x/cli", "to": "x/web", "port": 80, "protocol": "TCP", "expect": "allow"},
                                  {"from": "default/other", "to": "x/web", "port": 80, "protocol": "TCP",
                                   "expect": "deny"}]}])
    p = tmp_path / "c.json"
    p.write_text(json.dumps(doc))
    rc, out, err = run(capsys, p)
    assert rc == 0, err
    assert out["passed"] == 7
    assert "spec.ingress[0].ports[0].endPort: 70 must be greater than or equal to port 80" in err
