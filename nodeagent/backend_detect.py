"""Pick the iptables flavour the host already uses (nft or legacy).

Rules in the two flavours live in different kernel subsystems; a rule
"at the top of FORWARD" in one runs after everything in the other.  So the
agent must write into the flavour the rest of the host (kubelet,
kube-proxy, the CNI) uses.  We decide like kube-proxy's iptables wrapper
(kubernetes-sigs/iptables-wrappers): first the canary chains kubelet
creates in ``mangle`` (``KUBE-IPTABLES-HINT``, ``KUBE-KUBELET-CANARY``),
looked for in nft then legacy; failing that, the flavour with more rules,
nft on a tie (the default of current distributions).  Our own ``STOCKADE-``
rules count too, so a restarted agent stays with the flavour it used.

``python-iptables`` is libiptc: it writes legacy tables only, so it is a
choice for legacy hosts (``resolve`` refuses it on an nft host unless forced).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .kernel import Kernel

CANARIES = ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY")


@dataclass(frozen=True, slots=True)
class Detection:
    flavour: str  # "nft" | "legacy"
    reason: str


async def _save(kernel: Kernel, flavour: str, family: str, table: str) -> str:
    tool = f"{'iptables' if family == 'inet' else 'ip6tables'}-{flavour}-save"
    res = await kernel.run([tool, "-t", table], timeout=10)
    return res.stdout if res.ok else ""


async def detect(kernel: Kernel) -> Detection:
    for flavour in ("nft", "legacy"):
        outs = await asyncio.gather(*(_save(kernel, flavour, fam, "mangle") for fam in ("inet", "inet6")))
        for out in outs:
            for c in CANARIES:
                if f":{c} " in out:
                    return Detection(flavour, f"kubelet canary chain {c} found in {flavour} mangle table")
    counts: dict[str, int] = {}
    for flavour in ("nft", "legacy"):
        n = 0
        for table in ("filter", "nat", "mangle"):
            for fam in ("inet", "inet6"):
                out = await _save(kernel, flavour, fam, table)
                n += sum(1 for line in out.splitlines() if line.startswith("-"))
        counts[flavour] = n
    if counts["legacy"] > counts["nft"]:
        return Detection("legacy", f"legacy holds more rules ({counts['legacy']} vs nft {counts['nft']})")
    return Detection("nft", f"nft holds at least as many rules ({counts['nft']} vs legacy {counts['legacy']})")


async def resolve(kernel: Kernel, wanted: str) -> Detection:
    """The backend to use for flag value ``wanted`` (auto|nft|legacy|python-iptables)."""
    if wanted == "auto":
        return await detect(kernel)
    if wanted in ("nft", "legacy"):
        return Detection(wanted, "set by flag")
    if wanted == "python-iptables":
        d = await detect(kernel)
        if d.flavour != "legacy":
            return Detection("python-iptables", f"set by flag; note: host looks like nft ({d.reason})")
        return Detection("python-iptables", "set by flag (legacy host)")
    raise ValueError(f"--iptables-backend: unknown backend {wanted!r} (auto, nft, legacy, python-iptables)")
