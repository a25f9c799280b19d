"""Random policy and label changes that never open a forbidden pair.

Every change is one of: relabel a pod's ``tier`` (its ``app`` label, which
the fixed policies select on, never changes), create or replace a policy
``churn-K``, delete one.  Churn policies never select x/web or x/vault
(``app NotIn [web, vault]``), and policies only ever add allowances to the
pods they select, so the forbidden pairs of ``conftest`` (all into web or
vault) stay forbidden at every intermediate state, while the states
themselves keep changing (selections, isolation, ipsets, rules).

Seeded: the same seed gives the same changes.  It writes nothing.
"""

from __future__ import annotations

import random
from typing import Any

from stockade.cases import ObjectOp

from .faultlab import FaultLab, policy

TIERS = [f"t{k}" for k in range(6)]
POLICIES = 25


def churn_policy(name: str, rng: random.Random) -> dict[str, Any]:
    obj = policy(name, {"tier": rng.choice(TIERS)}, [])
    obj["spec"]["podSelector"]["matchExpressions"] = [
        {"key": "app", "operator": "NotIn", "values": ["web", "vault"]}]
    rules: list[dict[str, Any]] = []
    for _ in range(rng.randint(0, 3)):
        kind = rng.random()
        if kind < 0.5:
            peer: dict[str, Any] = {"podSelector": {"matchLabels": {"tier": rng.choice(TIERS)}}}
        elif kind < 0.8:
            peer = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": rng.choice(
                ["web", "near", "client", "other", "vault"])}}}
        else:
            peer = {"ipBlock": {"cidr": f"10.{rng.randint(0, 255)}.0.0/16"}}
        rule: dict[str, Any] = {"from": [peer]}
        if rng.random() < 0.5:
            rule["ports"] = [{"protocol": "TCP", "port": rng.choice([80, 443, 8080])}]
        rules.append(rule)
    obj["spec"]["ingress"] = rules
    return obj


def changes(fl: FaultLab, n: int, seed: int) -> list[ObjectOp]:
    rng = random.Random(seed)
    keys = sorted(fl.pods)
    out: list[ObjectOp] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.5:
            key = rng.choice(keys)
            app = fl.pods[key]["metadata"]["labels"]["app"]
            out.append(fl.relabel(key, {"app": app, "tier": rng.choice(TIERS)}))
        elif r < 0.85:
            name = f"churn-{rng.randrange(POLICIES)}"
            out.append(ObjectOp("NetworkPolicy", "x", name, churn_policy(name, rng)))
        else:
            out.append(ObjectOp("NetworkPolicy", "x", f"churn-{rng.randrange(POLICIES)}", None))
    return out
