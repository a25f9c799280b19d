"""A tiny packet walker over the in-memory kernel (tests only): does the
filter table let a NEW packet through FORWARD?  Understands exactly the
matches our renderer writes."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from nodeagent.fake_kernel import FakeKernel


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: str = "tcp"
    dport: int = 8080


def _set_has(k: FakeKernel, name: str, dirs: list[str], p: Packet) -> bool:
    s = k.sets.get(name)
    if s is None:
        return False
    if s.type == "hash:ip,port":
        return f"{p.dst if dirs[0] == 'dst' else p.src},{p.proto}:{p.dport}" in s.members
    ip = p.src if dirs[0] == "src" else p.dst
    if s.type == "hash:ip":
        return ip in s.members
    import ipaddress

    a = ipaddress.ip_address(ip)
    best = None
    for net, nm in [(m, False) for m in s.members] + [(m, True) for m in s.nomatch]:
        n = ipaddress.ip_network(net)
        if a in n and (best is None or n.prefixlen > best[0]):
            best = (n.prefixlen, nm)
    return best is not None and not best[1]


def verdict(k: FakeKernel, p: Packet, chain: str = "FORWARD", flavour: str = "nft", mark: int = 0) -> tuple[bool, int]:
    """(accepted, mark) after walking ``chain``."""
    t = k.table(flavour, "inet")
    for r in t.chains.get(chain, []):
        w = shlex.split(r)
        ok = True
        i = 0
        neg = False
        target = ""
        while i < len(w):
            a = w[i]
            if a == "!":
                neg = True
                i += 1
                continue
            if a == "-p":
                ok &= w[i + 1] == p.proto
                i += 2
            elif a == "--dport":
                lo, _, hi = w[i + 1].partition(":")
                ok &= int(lo) <= p.dport <= int(hi or lo)
                i += 2
            elif a == "--match-set":
                ok &= _set_has(k, w[i + 1], w[i + 2].split(","), p) != neg
                i += 3
            elif a == "--mark":
                v, _, m = w[i + 1].partition("/")
                mm = int(m, 16) if m else 0xFFFFFFFF
                ok &= ((mark & mm) == int(v, 16)) != neg
                i += 2
            elif a == "--ctstate":
                ok &= "NEW" in w[i + 1].split(",")
                i += 2
            elif a == "-j":
                target = w[i + 1]
                i += 2
                if target == "MARK":
                    v, _, m = w[i + 1].partition("/")
                    set_v, set_m = int(v, 16), int(m, 16)
                    i += 2
            else:
                i += 1
            neg = False
        if not ok:
            continue
        if target == "DROP":
            return False, mark
        if target == "RETURN":
            return True, mark
        if target == "MARK":
            mark = (mark & ~set_m) | set_v
        elif target in t.chains:
            acc, mark = verdict(k, p, target, flavour, mark)
            if not acc:
                return False, mark
    return True, mark


def allowed(k: FakeKernel, p: Packet) -> bool:
    return verdict(k, p)[0]
