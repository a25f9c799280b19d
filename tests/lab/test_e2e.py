"""End to end, real packets: the whole pipeline (API emulator -> controller
-> gRPC -> agents -> ipset/iptables) in a lab, through changes.

Every expectation is observed by the prober; convergence is awaited through
the agents' acknowledgements.  Skipped (with the reason) until every process
of the pipeline exists.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from stockade import cases
from stockade.cases import ObjectOp
from stockade.lab import netns
from stockade.lab.runner import CaseRun

from .conftest import leftovers, root_namespace_traces

MISSING = [m for m in ("stockade.kubeemu.main", "controller.main", "nodeagent.main")
           if importlib.util.find_spec(m) is None]
pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(180),
              pytest.mark.skipif(bool(MISSING), reason=f"pipeline not complete yet: missing {MISSING}")]

NS = {"x": {"labels": {"kubernetes.io/metadata.name": "x", "team": "a"}},
      "y": {"labels": {"kubernetes.io/metadata.name": "y", "team": "b"}}}
HTTP = [{"port": 80, "protocol": "TCP", "name": "http"}]


def probe(src: str, dst: str, expect: str, port: int = 80) -> dict[str, Any]:
    return {"from": src, "to": dst, "port": port, "protocol": "TCP", "expect": expect}


def web_policy(peers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "web", "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": peers}]}}


CLIENTS = {"podSelector": {"matchLabels": {"app": "client"}}}
OPS = {"namespaceSelector": {"matchLabels": {"team": "ops"}}}

CHANGES: dict[str, Any] = {
    "name": "e2e-changes",
    "nodes": 2,
    "namespaces": NS,
    "pods": [
        {"namespace": "x", "name": "web", "labels": {"app": "web"}, "ports": HTTP, "node": 0},
        {"namespace": "x", "name": "client", "labels": {"app": "client"}, "ports": HTTP, "node": 0},
        {"namespace": "x", "name": "other", "labels": {"app": "other"}, "ports": HTTP, "node": 1},
        {"namespace": "y", "name": "client", "labels": {"app": "client"}, "ports": HTTP, "node": 1},
    ],
    "policies": [web_policy([CLIENTS, OPS])],
    "probes": [probe("x/client", "x/web", "allow"), probe("x/other", "x/web", "deny"),
               probe("y/client", "x/web", "deny"), probe("x/web", "x/other", "allow")],
    "steps": [
        {"name": "pod relabel",
         "actions": [{"label-pod": {"pod": "x/other", "labels": {"app": "client"}}},
                     {"label-pod": {"pod": "x/client", "labels": {"app": "none"}}}],
         "probes": [probe("x/other", "x/web", "allow"), probe("x/client", "x/web", "deny")]},
        {"name": "namespace relabel",
         "actions": [{"label-namespace": {"namespace": "y", "labels": {"kubernetes.io/metadata.name": "y",
                                                                       "team": "ops"}}}],
         "probes": [probe("y/client", "x/web", "allow")]},
        {"name": "policy update",
         "actions": [{"apply": web_policy([OPS])}],
         "probes": [probe("x/other", "x/web", "deny"), probe("y/client", "x/web", "allow")]},
        {"name": "policy delete",
         "actions": [{"delete": {"kind": "NetworkPolicy", "namespace": "x", "name": "web"}}],
         "probes": [probe("x/other", "x/web", "allow"), probe("x/client", "x/web", "allow")]},
        {"name": "pod delete, new pod reuses its address with other labels",
         "actions": [{"apply": web_policy([CLIENTS])},
                     {"delete-pod": "x/other"},
                     {"create-pod": {"namespace": "x", "name": "intruder", "labels": {"app": "intruder"},
                                     "ports": HTTP, "node": 1}},
                     {"create-pod": {"namespace": "x", "name": "friend", "labels": {"app": "client"},
                                     "ports": HTTP, "node": 1}}],
         "probes": [probe("x/intruder", "x/web", "deny"), probe("x/friend", "x/web", "allow"),
                    probe("x/web", "x/intruder", "allow")]},
    ],
}


@pytest.mark.parametrize("mode", ["bridged", "routed"])
async def test_changes_are_enforced_with_real_packets(mode: str) -> None:
    case = cases.parse_case(CHANGES, "e2e")
    stages = cases.case_stages(case)
    # the intruder takes the deleted pod's address
    last = {op.name: op.obj for op in stages[-1].ops if op.kind == "Pod" and op.obj is not None}
    first = {op.name: op.obj for op in stages[0].ops if op.kind == "Pod" and op.obj is not None}
    assert last["intruder"]["status"]["podIP"] == first["other"]["status"]["podIP"]
    run = CaseRun(case, stages, mode, probe_timeout=1.0)  # type: ignore[arg-type]
    res = await run.run()
    bad = [r.to_json() for r in res.results if not r.passed]
    assert bad == [] and res.passed == sum(len(s.probes) for s in stages)
    assert leftovers(run.lab.runid) == []


RESTART: dict[str, Any] = {
    "name": "e2e-restarts", "nodes": 2, "namespaces": NS,
    "pods": [{"namespace": "x", "name": "web", "labels": {"app": "web"}, "ports": HTTP, "node": 0},
             {"namespace": "x", "name": "client", "labels": {"app": "client"}, "ports": HTTP, "node": 1},
             {"namespace": "x", "name": "other", "labels": {"app": "other"}, "ports": HTTP, "node": 1}],
    "policies": [web_policy([CLIENTS])],
    "probes": [probe("x/client", "x/web", "allow"), probe("x/other", "x/web", "deny")],
}


async def observe(run: CaseRun, src: str, dst: str) -> str | None:
    [o] = await run.lab.prober.probe_all([run.lab.probe_of(src, dst, 80, "TCP")])
    return o.observed


async def test_controller_and_agent_restarts() -> None:
    case = cases.parse_case(RESTART, "e2e")
    stages = cases.case_stages(case)
    run = CaseRun(case, stages, probe_timeout=1.0)
    policy_delete = ObjectOp("NetworkPolicy", "x", "web", None)
    policy_put = ObjectOp("NetworkPolicy", "x", "web", web_policy([CLIENTS]))
    try:
        await run.setup()
        await run.pipe.wait_converged(await run.apply(stages[0].ops))
        assert [r.observed for r in await run.probe(stages[0])] == ["allow", "deny"]
        assert root_namespace_traces() == []  # the whole pipeline runs, nothing in the machine's namespace

        # controller gone: agents keep enforcing (fail-static)
        assert run.pipe.controller is not None
        await run.lab.stop_process(run.pipe.controller)
        assert await observe(run, "x/other", "x/web") == "deny"
        # a change made while it is down is enforced once it is back
        seen = await run.pipe.write([policy_delete])
        await run.pipe.start_controller()
        await run.pipe.wait_converged(seen)
        assert await observe(run, "x/other", "x/web") == "allow"

        # agent of web's node gone: the change waits for it, then is enforced
        seen = await run.pipe.write([policy_put])
        await run.pipe.wait_converged(seen)
        assert await observe(run, "x/other", "x/web") == "deny"
        await run.lab.stop_process(run.pipe.agents[0])
        assert await observe(run, "x/other", "x/web") == "deny"  # rules stay in the kernel
        seen = await run.pipe.write([policy_delete])
        await run.pipe.start_agent(0)
        await run.pipe.wait_converged(seen)
        assert await observe(run, "x/other", "x/web") == "allow"
        assert await observe(run, "x/client", "x/web") == "allow"

        # restart again with a policy present: the fresh agent installs it
        seen = await run.pipe.write([policy_put])
        await run.pipe.restart_agent(0)
        await run.pipe.wait_converged(seen)
        assert await observe(run, "x/other", "x/web") == "deny"
        assert await observe(run, "x/client", "x/web") == "allow"
    finally:
        await run.close()
    assert leftovers(run.lab.runid) == []


def test_unusable_case_file_exits_2_and_runs_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "bad", "namespaces": {}, "pods": [], "probes": [{"from": 1}]}')
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "lab", "run", str(bad)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert "bad.json" in r.stderr and "probes[0]" in r.stderr
    assert '"mode": "lab"' in r.stdout


def test_interrupted_lab_run_removes_everything() -> None:
    recipe = Path(__file__).resolve().parents[2] / "stockade/lab/recipes/recipe-02-limit-traffic-to-an-application.json"
    before = set(netns.list_namespaces("stklab-"))
    p = subprocess.Popen([sys.executable, "-m", "stockade.cli", "lab", "run", str(recipe)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runid = ""
    try:
        deadline = time.monotonic() + 20
        while not runid and time.monotonic() < deadline:
            new = set(netns.list_namespaces("stklab-")) - before
            pods = [n for n in new if n.rsplit("-", 1)[1].startswith("p")]
            runid = pods[0].split("-")[1] if pods else ""  # pods wired: the lab is half built
            time.sleep(0.01)
        assert runid, "the run built no lab"
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 130, err
        assert "interrupted; lab torn down" in err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert leftovers(runid) == []


TEMPLATES_SCTP: dict[str, Any] = {
    "name": "e2e-templates-sctp", "nodes": 2,
    "namespaces": {"x": {"labels": {"kubernetes.io/metadata.name": "x"}}},
    "pods": [{"namespace": "x", "name": "a", "labels": {"app": "a"}, "ports": HTTP},
             {"namespace": "x", "name": "b", "labels": {"app": "b"},
              "ports": [*HTTP, {"port": 9000, "protocol": "SCTP", "name": "sctp"}]},
             {"namespace": "x", "name": "c", "labels": {"app": "c"}, "ports": HTTP}],
    "external": [{"name": "internet", "ip": "203.0.113.7", "ports": []}],
    "policies": [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                  "metadata": {"name": "a-from-b", "namespace": "x"},
                  "spec": {"podSelector": {"matchLabels": {"app": "a"}},
                           "ingress": [{"from": [{"ipBlock": {"cidr": "{{ip x/b}}/32"}}]}]}}],
    "probes": [probe("x/b", "x/a", "allow"), probe("x/c", "x/a", "deny"),
               probe("external:internet", "x/a", "deny"), probe("external:internet", "x/c", "allow"),
               {"from": "x/c", "to": "x/b", "port": 9000, "protocol": "SCTP", "expect": "allow"}],
}


def test_templates_outside_host_and_sctp_error(tmp_path: Path) -> None:
    f = tmp_path / "case.json"
    f.write_text(json.dumps(TEMPLATES_SCTP))
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "lab", "run", str(f)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert (doc["passed"], doc["failed"]) == (4, 1), r.stdout
    [sctp] = [x for x in doc["cases"][0]["results"] if x["protocol"] == "SCTP"]
    assert "no SCTP" in sctp["error"]


async def _log_has(lp: Any, pattern: str, timeout: float = 20.0) -> str:
    """Wait until a line of ``lp``'s log matches ``pattern``; the line."""
    import asyncio
    import re

    deadline = time.monotonic() + timeout
    while True:
        with open(lp.log, errors="replace") as f:
            for line in f:
                if re.search(pattern, line):
                    return line
        assert time.monotonic() < deadline, f"no {pattern!r} in {lp.name}'s log:\n{lp.log_tail()}"
        await asyncio.sleep(0.1)


async def test_the_channel_is_tls_and_admits_each_node_only_its_own_agent() -> None:
    """The lab's default channel: TLS with the controller's own CA, agents
    admitted by the token of their node's agent pod.  An agent presenting
    another node's token is turned away (its node keeps enforcing); the
    token the kubelet would rotate in is read at the next reconnect; the
    agents' namespace and pods survive the runner emptying the cluster."""
    import shutil

    case = cases.parse_case(RESTART, "e2e")
    stages = cases.case_stages(case)
    run = CaseRun(case, stages, probe_timeout=1.0)
    try:
        await run.setup()
        st = await run.pipe.wait_converged(await run.apply(stages[0].ops))
        assert st["channel"]["tls"] == "self-signed" and st["channel"]["auth"] == "tokenreview"
        assert "198.19.0.250" in st["channel"]["certificate"]["names"]
        ch, ctl = run.pipe.channel, run.pipe.controller
        assert ch is not None and ctl is not None
        assert "BEGIN CERTIFICATE" in Path(ch.ca_file).read_text()

        # node-1's agent with node-0's token: refused, node-1 keeps its rules
        shutil.copy(ch.token_file(0), ch.token_file(1))
        await run.pipe.restart_agent(1)
        await _log_has(ctl, r"rejected stream from .* claiming node 'node-1': wrong_node")
        await _log_has(run.pipe.agents[1], r"PERMISSION_DENIED: claims node 'node-1' but is the agent pod "
                                           r"stockade-system/stockade-agent-node-0 on node node-0")
        st = await run.pipe.status()
        assert not [n for n in st["nodes"] if n["node"] == "node-1" and n.get("connected")]
        assert [r.observed for r in await run.probe(stages[0])] == ["allow", "deny"]

        # its own token again (as the kubelet writes a rotated one): read at the next connect, no restart
        await ch.mint(1)
        await run.pipe.wait_converged(timeout=40)

        # emptying the cluster between cases keeps the agents' namespace and pods: still admitted after
        await run.clear()
        assert run.pipe.kube is not None
        code, pods = await run.pipe.kube.request("GET", "/api/v1/namespaces/stockade-system/pods")
        assert code == 200 and len(pods["items"]) == 2
        await run.pipe.restart_agent(0)
        await run.pipe.wait_converged()
    finally:
        await run.close()
    assert leftovers(run.lab.runid) == []


def test_lab_run_insecure_grpc_keeps_the_plaintext_channel(tmp_path: Path) -> None:
    recipe = Path(__file__).resolve().parents[2] / "stockade/lab/recipes/recipe-02-limit-traffic-to-an-application.json"
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "lab", "run", "--insecure-grpc", "--keep-logs",
                        str(recipe)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["failed"] == 0
    kept = r.stderr.split("lab logs kept in ", 1)[1].split()[0]
    try:
        log = (Path(kept) / "controller.log").read_text()
        assert "gRPC channel: TLS insecure, agents authenticated by none" in log, log[-2000:]
        assert "stockade-ca" not in log  # no CA made or published
    finally:
        import shutil

        shutil.rmtree(kept, ignore_errors=True)


def test_a_case_in_the_agents_namespace_is_unusable(tmp_path: Path) -> None:
    f = tmp_path / "case.json"
    f.write_text(json.dumps({"name": "squatter", "nodes": 1,
                             "namespaces": {"stockade-system": {"labels": {}}},
                             "pods": [{"namespace": "stockade-system", "name": "a", "ports": HTTP}], "probes": []}))
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "lab", "run", str(f)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "namespace stockade-system is the lab's agent namespace" in r.stderr
