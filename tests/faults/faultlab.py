"""The fault tests' lab: 2 nodes, 5 pods, 2 policies, the real pipeline.

    node-0: x/web (app=web, isolated: only app=client may connect), x/near
    node-1: x/client, x/other, x/vault (app=vault, isolated: nobody may connect)

Forbidden at every moment of every fault test (no change a test makes may
allow them): other -> web (across nodes), near -> web (same node),
client -> vault (same node), web -> vault (across nodes).
Allowed throughout unless a test says otherwise: client -> web, web -> other.

:func:`open_lab` builds the lab, starts emulator, controller and agents,
writes the objects, awaits the agents' acknowledgement, checks the pairs
with real packets, and always tears everything down (also on failure).
The test fixture (``conftest``) and ``benchmarks/soak.py`` use it.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from stockade import cases
from stockade.cases import ObjectOp
from stockade.lab.pipeline import Pipeline
from stockade.lab.runner import CaseRun

from .watch import Pair

HTTP = [{"port": 80, "protocol": "TCP", "name": "http"}]
NS = {"x": {"labels": {"kubernetes.io/metadata.name": "x"}}}

FORBIDDEN: list[Pair] = [("x/other", "x/web", 80), ("x/near", "x/web", 80),
                         ("x/client", "x/vault", 80), ("x/web", "x/vault", 80)]
ALLOWED: list[Pair] = [("x/client", "x/web", 80), ("x/web", "x/other", 80)]


def policy(name: str, selector: dict[str, str], ingress: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "x"},
            "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"], "ingress": ingress}}


def from_pods(labels: dict[str, str]) -> list[dict[str, Any]]:
    return [{"from": [{"podSelector": {"matchLabels": labels}}]}]


def big_policy(name: str, blocks: int, salt: int = 0) -> dict[str, Any]:
    """A policy selecting app=web that admits ``blocks`` /32s of 10/8
    (addresses no lab pod has): a large apply that changes nothing for the
    probed pairs."""
    cidrs = [{"ipBlock": {"cidr": f"10.{(k + salt) // 65536 % 256}.{(k + salt) // 256 % 256}.{(k + salt) % 256}/32"}}
             for k in range(blocks)]
    return policy(name, {"app": "web"}, [{"from": cidrs}])


CASE: dict[str, Any] = {
    "name": "faults", "nodes": 2, "namespaces": NS,
    "pods": [{"namespace": "x", "name": "web", "labels": {"app": "web"}, "ports": HTTP, "node": 0},
             {"namespace": "x", "name": "near", "labels": {"app": "near"}, "ports": HTTP, "node": 0},
             {"namespace": "x", "name": "client", "labels": {"app": "client"}, "ports": HTTP, "node": 1},
             {"namespace": "x", "name": "other", "labels": {"app": "other"}, "ports": HTTP, "node": 1},
             {"namespace": "x", "name": "vault", "labels": {"app": "vault"}, "ports": HTTP, "node": 1}],
    "policies": [policy("web", {"app": "web"}, from_pods({"app": "client"})),
                 policy("vault", {"app": "vault"}, [])],
    "probes": [{"from": s, "to": d, "port": p, "protocol": "TCP", "expect": "deny"} for s, d, p in FORBIDDEN]
    + [{"from": s, "to": d, "port": p, "protocol": "TCP", "expect": "allow"} for s, d, p in ALLOWED],
}


@dataclass
class FaultLab:
    run: CaseRun
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # "ns/name" -> pod object as written

    @property
    def pipe(self) -> Pipeline:
        return self.run.pipe

    def relabel(self, key: str, labels: dict[str, str]) -> ObjectOp:
        obj = copy.deepcopy(self.pods[key])
        obj["metadata"]["labels"] = dict(labels)
        ns, name = key.split("/", 1)
        return ObjectOp("Pod", ns, name, obj)

    async def observe(self, src: str, dst: str, port: int = 80) -> str | None:
        [o] = await self.run.lab.prober.probe_all([self.run.lab.probe_of(src, dst, port, "TCP")])
        return o.observed

    async def observe_all(self, pairs: list[Pair]) -> list[str | None]:
        outs = await self.run.lab.prober.probe_all([self.run.lab.probe_of(s, d, p, "TCP") for s, d, p in pairs])
        return [o.observed for o in outs]


def put(obj: dict[str, Any]) -> ObjectOp:
    return ObjectOp("NetworkPolicy", obj["metadata"]["namespace"], obj["metadata"]["name"], obj)


def delete(name: str, namespace: str = "x") -> ObjectOp:
    return ObjectOp("NetworkPolicy", namespace, name, None)


@contextlib.asynccontextmanager
async def open_lab(probe_timeout: float = 1.0) -> AsyncIterator[FaultLab]:
    case = cases.parse_case(CASE, "faults")
    stages = cases.case_stages(case)
    run = CaseRun(case, stages, "bridged", probe_timeout=probe_timeout)
    run.lab.keep_logs = bool(os.environ.get("STOCKADE_FAULTS_KEEP_LOGS"))  # logs to /tmp/stockade-lab-logs/<runid>
    fl = FaultLab(run, {f"{op.namespace}/{op.name}": op.obj for op in stages[0].ops
                        if op.kind == "Pod" and op.obj is not None})
    try:
        await run.setup()
        await run.pipe.wait_converged(await run.apply(stages[0].ops))
        got = await fl.observe_all(FORBIDDEN + ALLOWED)
        assert got == ["deny"] * len(FORBIDDEN) + ["allow"] * len(ALLOWED), got
        yield fl
    finally:
        await run.close()
