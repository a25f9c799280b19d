"""Host checks the agent reports at start (it changes nothing).

* bridged nodes (kubenet's ``cbr0``): ``br_netfilter`` must be loaded and
  ``net.bridge.bridge-nf-call-iptables`` (and ``-ip6tables``) must be 1, or
  pod-to-pod traffic on the bridge never reaches iptables and no policy
  applies.  On this kernel the sysctl is per network namespace.
* ``ipset`` must run, and the ``set`` match (xt_set) must be usable.

A failed check is reported (status page, log), not fatal: the agent still
enforces what it can; the operator must fix the host.
"""

from __future__ import annotations

from dataclasses import dataclass

from .kernel import Kernel

BRIDGE_SYSCTLS = ("/proc/sys/net/bridge/bridge-nf-call-iptables",
                  "/proc/sys/net/bridge/bridge-nf-call-ip6tables")


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


async def run_checks(kernel: Kernel, bridged: bool) -> list[Check]:
    out: list[Check] = []
    if bridged:
        for path in BRIDGE_SYSCTLS:
            res = await kernel.run(["cat", path], timeout=5)
            name = path.rsplit("/", 1)[1]
            if res.rc != 0:
                out.append(Check(name, False, f"{path} missing: br_netfilter is not loaded (modprobe br_netfilter)"))
            else:
                val = res.stdout.strip()
                out.append(Check(name, val == "1",
                                 f"{name}={val}" + ("" if val == "1" else f": set it to 1 (sysctl -w net.bridge.{name}=1)")))
    res = await kernel.run(["ipset", "version"], timeout=5)
    out.append(Check("ipset", res.ok, res.stdout.strip() if res.ok else res.describe()))
    res = await kernel.run(["cat", "/proc/net/ip_tables_matches"], timeout=5)
    if res.ok and "set" in res.stdout.split():
        out.append(Check("xt_set", True, "xt_set match loaded"))
    else:
        out.append(Check("xt_set", True, "xt_set not loaded yet (the kernel loads it with the first set rule)"))
    return out
