"""Run a new connection's first packet through compiled node states.

The walker interprets ``stockade.state`` rules the way iptables does, so
tests can check the compiled state (not the compiler's intentions) against
the spec-level oracle.  It models where Linux runs the filter table for a
pod network whose pods sit behind a bridge (``br_netfilter``) or routed
veths:

==========================  ===========================================
path                        chains that run
==========================  ===========================================
pod -> pod, same node       FORWARD on that node (one pass: egress and
                            ingress phases see the same packet mark)
pod -> pod, other node      FORWARD on the source node, then FORWARD on
                            the destination node (the mark does not
                            cross the wire)
pod -> its own node's IP    INPUT on that node
pod -> another node's IP    FORWARD on the source node, INPUT on the other
pod -> outside host         FORWARD on the source node
outside host -> pod         FORWARD on the destination node
node -> its own pod         OUTPUT on that node (Stockade hooks none: allowed)
node -> pod on another      OUTPUT on the source node, FORWARD on the other
pod -> itself               none: the packet never leaves the pod's own
                            network namespace (loopback), so it passes
==========================  ===========================================

A built-in chain runs Stockade's hooks in position order; a DROP anywhere
ends the walk (denied); a RETURN from a hooked chain goes on to the next
hook and then to the rest of the host's chain, which the walker takes to
accept.  The packet is a NEW connection's first packet (``ctstate NEW``).
Set matching follows ipset: ``hash:ip`` exact; ``hash:net`` longest prefix
first, a ``nomatch`` entry at the longest matching prefix means no match;
``hash:ip,port`` matches ``ip,proto:port`` with the address and port taken
from the directions given (``src``/``dst``).

What it does not do: conntrack beyond NEW, NAT, Services, other tables, or
the host's own rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from stockade.state import Chain, Family, IPSet, NodeState, Rule, SetMatch, render_rule

EndKind = Literal["pod", "host"]
MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Packet:
    """The first packet of a connection.

    ``src``/``dst``: IP addresses (same family).  ``proto``: "tcp", "udp" or
    "sctp"; ``dport``/``sport``: ports.  ``src_kind``/``dst_kind``: "pod"
    for an address living in its own pod network namespace on the node
    whose state is passed, "host" for an address of that node itself (node
    IP, hostNetwork pod).  An end whose state is None is outside the
    cluster (its kind does not matter).  ``mark``: the packet mark before
    Stockade's chains run; ``in_iface``/``out_iface``/``bridged``: what
    ``-i``/``-o``/``--physdev-is-bridged`` matches would see ("": none).
    """

    src: str
    dst: str
    proto: str = "tcp"
    dport: int = 0
    sport: int = 40000
    src_kind: EndKind = "pod"
    dst_kind: EndKind = "pod"
    mark: int = 0
    in_iface: str = ""
    out_iface: str = ""
    bridged: bool = False


@dataclass(slots=True)
class WalkResult:
    allowed: bool
    trace: list[str] = field(default_factory=list)


class WalkError(ValueError):
    """The state cannot be walked (a jump to a missing chain, a loop)."""


def walk(src_state: NodeState | None, dst_state: NodeState | None, packet: Packet) -> WalkResult:
    """Walk ``packet`` through the source node's state (egress side) and the
    destination node's state (ingress side).  Same node: pass the same
    state (or one with the same ``node``) twice."""
    src_ip = ipaddress.ip_address(packet.src)
    dst_ip = ipaddress.ip_address(packet.dst)
    if src_ip.version != dst_ip.version:
        raise WalkError(f"packet: {packet.src} and {packet.dst} are of different families")
    fam: Family = "inet" if src_ip.version == 4 else "inet6"
    pkt = _Pkt(packet, str(src_ip), str(dst_ip), int(src_ip), int(dst_ip), src_ip.max_prefixlen)
    same = src_state is not None and dst_state is not None and src_state.node == dst_state.node
    passes: list[tuple[NodeState, str]] = []
    if packet.src_kind == "pod" and packet.dst_kind == "pod" and pkt.src == pkt.dst:
        return WalkResult(True, [f"{packet.src} -> itself: stays inside the pod, no node chain runs", "allowed"])
    if src_state is not None:
        if packet.src_kind == "host":
            passes.append((src_state, "OUTPUT"))
            if same and packet.dst_kind == "host":
                passes.append((src_state, "INPUT"))
        elif same and packet.dst_kind == "host":
            passes.append((src_state, "INPUT"))
        else:
            passes.append((src_state, "FORWARD"))
    if dst_state is not None and not same:
        passes.append((dst_state, "INPUT" if packet.dst_kind == "host" else "FORWARD"))
    trace: list[str] = []
    for state, builtin in passes:
        trace.append(f"{state.node}: {builtin} ({fam}) {packet.src} -> {packet.dst} {packet.proto}/{packet.dport}")
        if not _run_builtin(state, fam, builtin, pkt, trace):
            trace.append(f"{state.node}: DROP")
            return WalkResult(False, trace)
    trace.append("allowed")
    return WalkResult(True, trace)


@dataclass(slots=True)
class _Pkt:
    p: Packet
    src: str
    dst: str
    src_int: int
    dst_int: int
    bits: int
    mark: int = 0


def _run_builtin(state: NodeState, fam: Family, builtin: str, pkt: _Pkt, trace: list[str]) -> bool:
    fs = state.family(fam)
    pkt.mark = pkt.p.mark
    for hook in sorted((h for h in fs.hooks if h.builtin == builtin), key=lambda h: h.position):
        trace.append(f"{state.node}: {builtin} -> {hook.target}")
        if _run_chain(state, fs.chains, hook.target, pkt, trace, 0) == "DROP":
            return False
    return True


def _run_chain(state: NodeState, chains: Mapping[str, Chain], name: str, pkt: _Pkt,
               trace: list[str], depth: int) -> str:
    """"DROP" or "RETURN"."""
    if depth > MAX_DEPTH:
        raise WalkError(f"{state.node}: jumps nested deeper than {MAX_DEPTH} (a loop?) at {name}")
    chain = chains.get(name)
    if chain is None:
        raise WalkError(f"{state.node}: no chain {name!r}")
    for i, r in enumerate(chain.rules):
        if not _matches(state, r, pkt):
            continue
        trace.append(f"{state.node}: {name}[{i}] {' '.join(render_rule(r))}")
        if r.action == "DROP":
            return "DROP"
        if r.action == "RETURN":
            return "RETURN"
        if r.action == "MARK":
            assert r.set_mark is not None
            v, m = r.set_mark
            pkt.mark = ((pkt.mark & ~m) ^ v) & 0xFFFFFFFF
        elif r.action == "JUMP":
            if _run_chain(state, chains, r.target, pkt, trace, depth + 1) == "DROP":
                return "DROP"
        # NFLOG: logs and goes on
    return "RETURN"


def _iface(pattern: str, name: str) -> bool:
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _matches(state: NodeState, r: Rule, pkt: _Pkt) -> bool:
    p = pkt.p
    if r.proto is not None and r.proto != p.proto:
        return False
    if r.dport is not None and not (r.dport[0] <= p.dport <= r.dport[1]):
        return False
    if r.in_iface and not _iface(r.in_iface, p.in_iface):
        return False
    if r.out_iface and not _iface(r.out_iface, p.out_iface):
        return False
    if r.physdev_is_bridged is not None and r.physdev_is_bridged != p.bridged:
        return False
    if r.ctstate and "NEW" not in r.ctstate:
        return False
    if r.mark is not None:
        v, m, neg = r.mark
        if ((pkt.mark & m) == v) == neg:
            return False
    for sm in r.sets:
        s = state.sets.get(sm.set)
        if s is None:
            raise WalkError(f"{state.node}: rule names missing set {sm.set!r}")
        if _set_match(s, sm, pkt) == sm.negate:
            return False
    return True


def _set_match(s: IPSet, sm: SetMatch, pkt: _Pkt) -> bool:
    if (s.family == "inet") != (pkt.bits == 32):
        return False
    first = sm.dirs[0]
    ip = pkt.src if first == "src" else pkt.dst
    if s.type == "hash:ip":
        return ip in s.members
    if s.type == "hash:ip,port":
        port = pkt.p.dport if sm.dirs[1] == "dst" else pkt.p.sport
        return f"{ip},{pkt.p.proto}:{port}" in s.members
    return _net_match(s, pkt.src_int if first == "src" else pkt.dst_int, pkt.bits)


_NET_CACHE: dict[int, tuple[IPSet, list[int], set[tuple[int, int]], set[tuple[int, int]]]] = {}


def _parsed(s: IPSet) -> tuple[list[int], set[tuple[int, int]], set[tuple[int, int]]]:
    hit = _NET_CACHE.get(id(s))
    if hit is not None and hit[0] is s:
        return hit[1], hit[2], hit[3]
    if len(_NET_CACHE) > 4096:
        _NET_CACHE.clear()

    def entries(texts: Iterable[str]) -> set[tuple[int, int]]:
        out = set()
        for t in texts:
            n = ipaddress.ip_network(t)
            out.add((n.prefixlen, int(n.network_address) >> (n.max_prefixlen - n.prefixlen)))
        return out

    members, nomatch = entries(s.members), entries(s.nomatch)
    plens = sorted({pl for pl, _ in members | nomatch}, reverse=True)
    _NET_CACHE[id(s)] = (s, plens, members, nomatch)
    return plens, members, nomatch


def _net_match(s: IPSet, ip: int, bits: int) -> bool:
    plens, members, nomatch = _parsed(s)
    for pl in plens:
        k = (pl, ip >> (bits - pl))
        if k in nomatch:
            return False
        if k in members:
            return True
    return False
