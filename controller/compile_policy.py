"""One NetworkPolicy -> its iptables chains, jump rules and the sets they name.

Pure and node-independent: a policy compiles to the same chains on every
node (set *names* are global; only the contents of per-node sets differ),
so the engine compiles each policy once and shares the resulting
``Chain``/``Rule`` objects across all nodes.  The complete per-node layout
(base chains, phases, isolation) is documented in ``controller.compile_node``.

Per policy and family:

* ``STOCKADE-E-<hash(key)>`` (policies with Egress and at least one egress
  rule): one rule per (rule, peer, port) combination; each marks the packet
  with the egress bit (``-j MARK --set-xmark B/B``).  Ingress the same in
  ``STOCKADE-I-<hash(key)>`` with the ingress bit.  The two directions use
  separate chains and bits, so ingress rules never allow egress.
* a jump rule ``-m set --match-set <targets> src|dst -j <chain>`` that the
  node's phase chain holds; ``<targets>`` is the per-node set of the node's
  own pods the policy selects.  A policy with no rules in a direction has
  no chain and no jump: it only isolates.
* peers: a pod peer is the cluster-wide ``hash:ip`` set of its group's pod
  IPs (``stk4p-``); each ipBlock its own ``hash:net`` set (``stk4n-``) with
  the excepts as ``nomatch`` (a /0 is stored as two /1 halves, because
  ipset cannot hold /0); a named port is a ``hash:ip,port`` set
  (``stk4q-``) of (pod IP, proto:port) over the destination pods: the
  policy's selected pods for ingress, the peer's pods for egress, every
  pod for an empty ``to`` or an ipBlock peer (so a named port to a
  non-pod destination never matches).  Empty peers: any address; empty
  ports: any protocol and port; ``endPort``: a dport range.

What it does not do: decide which nodes get the policy, or fill sets.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from controller import naming
from controller.label_index import ALL_PODS, GroupSpec, group_id
from controller.model import SELECT_ALL, IPBlock, NetworkPolicy, Peer, PolicyRule, PortSpec
from stockade.state import Chain, Direction, Family, IPSet, Proto, Rule, SetMatch

MAX_COMMENT = 255


@dataclass(frozen=True, slots=True)
class CompileSettings:
    """Knobs of the rule layout (same in every replica)."""

    egress_mark: int = 0x100000  # packet-mark bit: allowed by some egress rule (clear of kube-proxy's 0x4000/0x8000)
    ingress_mark: int = 0x200000  # packet-mark bit: allowed by some ingress rule
    nflog_group: int | None = None  # log dropped NEW packets (rate-limited) to this NFLOG group; None: off
    nflog_limit: str = "10/second"
    families: tuple[Family, ...] | None = None  # None: IPv4, plus IPv6 once the cluster has any IPv6 pod or ipBlock

    def __post_init__(self) -> None:
        for name in ("egress_mark", "ingress_mark"):
            bit = getattr(self, name)
            if bit <= 0 or bit & (bit - 1) or bit > 0x80000000:
                raise ValueError(f"CompileSettings.{name}: {bit:#x} is not a single mark bit")
        if self.egress_mark == self.ingress_mark:
            raise ValueError("CompileSettings.ingress_mark: must differ from egress_mark")


@dataclass(frozen=True, slots=True)
class SetDef:
    """A cluster-wide set whose members follow pods: ``kind`` PEER (IPs of
    the group's pods) or PORT (``ip,proto:port`` of the group's pods that
    name port ``port`` for ``proto``)."""

    name: str
    kind: str
    family: Family
    group: str
    port: str = ""
    proto: Proto = "tcp"
    comment: str = ""


@dataclass(frozen=True, slots=True)
class FamilyPolicy:
    chains: tuple[Chain, ...]  # the policy's own chains (0-2)
    egress_jump: Rule | None
    ingress_jump: Rule | None
    sets: tuple[str, ...]  # cluster-wide set names the chains reference (sorted)


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    key: str
    target: str  # group id of the pods the policy selects
    ingress: bool  # isolates ingress of the selected pods
    egress: bool
    families: Mapping[Family, FamilyPolicy]
    groups: Mapping[str, GroupSpec]  # every group the policy reads (target included)
    dynamic_sets: Mapping[str, SetDef]
    static_sets: Mapping[str, IPSet]  # ipBlock sets: content fixed by the policy
    set_names: tuple[str, ...] = ()  # every cluster-wide set the chains name, all families
    jumps: bool = False  # some family has a jump rule (so the target set is named)


def target_spec(p: NetworkPolicy) -> GroupSpec:
    return GroupSpec(p.namespace, None, p.pod_selector)


def peer_spec(namespace: str, peer: Peer) -> GroupSpec:
    if peer.namespace_selector is None:
        return GroupSpec(namespace, None, peer.pod_selector or SELECT_ALL)
    return GroupSpec(None, peer.namespace_selector, peer.pod_selector or SELECT_ALL)


@lru_cache(maxsize=65536)
def block_family(block: IPBlock) -> Family:
    return "inet" if ipaddress.ip_network(block.cidr, strict=False).version == 4 else "inet6"


def _net_text(n: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)


@lru_cache(maxsize=65536)
def block_set(block: IPBlock) -> IPSet:
    """The ``hash:net`` set of one ipBlock: the cidr (a /0 as two /1), the
    excepts as ``nomatch``.  An except equal to a member removes it."""
    net = ipaddress.ip_network(block.cidr, strict=False)
    fam: Family = "inet" if net.version == 4 else "inet6"
    members = {_net_text(n) for n in (net.subnets(prefixlen_diff=1) if net.prefixlen == 0 else (net,))}
    nomatch: set[str] = set()
    for e in block.excepts:
        en = ipaddress.ip_network(e, strict=False)
        text = _net_text(en)
        if en.prefixlen == 0:
            members.clear()
        elif text in members:
            members.discard(text)
        else:
            nomatch.add(text)
    key = json.dumps([block.cidr, list(block.excepts)], separators=(",", ":"))
    if not members:
        nomatch.clear()
    comment = f"ipBlock {block.cidr}" + (f" except {','.join(block.excepts)}" if block.excepts else "")
    return IPSet(naming.set_name(naming.NET, fam, key), "hash:net", fam, frozenset(members), frozenset(nomatch),
                 comment=comment)


class _Builder:
    def __init__(self, p: NetworkPolicy, settings: CompileSettings) -> None:
        self.p = p
        self.key: str = p.key
        self.settings = settings
        self.groups: dict[str, GroupSpec] = {}
        self.dynamic: dict[str, SetDef] = {}
        self.static: dict[str, IPSet] = {}
        self.target = self.group(target_spec(p))

    def group(self, spec: GroupSpec) -> str:
        gid = group_id(spec)
        self.groups[gid] = spec
        return gid

    def peer_set(self, gid: str, fam: Family) -> str:
        name = naming.set_name(naming.PEER, fam, gid)
        if name not in self.dynamic:
            self.dynamic[name] = SetDef(name, naming.PEER, fam, gid, comment=self.groups[gid].text())
        return name

    def port_set(self, gid: str, port: str, proto: Proto, fam: Family) -> str:
        name = naming.set_name(naming.PORT, fam, f"{gid}|{port}|{proto}")
        if name not in self.dynamic:
            self.dynamic[name] = SetDef(name, naming.PORT, fam, gid, port, proto,
                                        comment=f"{self.groups[gid].text()} port={proto}/{port}")
        return name

    def rules(self, direction: str, rules: tuple[PolicyRule, ...], fam: Family) -> tuple[Rule, ...]:
        ingress = direction == "ingress"
        peer_dir: Direction = "src" if ingress else "dst"
        bit = self.settings.ingress_mark if ingress else self.settings.egress_mark
        out: list[Rule] = []
        for i, rule in enumerate(rules):
            comment = f"{self.key} {direction}[{i}]"[:MAX_COMMENT]
            # (peer match or None for any address, group whose pods resolve
            # named ports; "" for every pod, registered only when used)
            peers: list[tuple[SetMatch | None, str]] = []
            if not rule.peers:
                peers.append((None, self.target if ingress else ""))
            for peer in rule.peers:
                if peer.ip_block is not None:
                    if block_family(peer.ip_block) != fam:
                        continue
                    s = block_set(peer.ip_block)
                    self.static[s.name] = s
                    peers.append((SetMatch(s.name, (peer_dir,)), self.target if ingress else ""))
                else:
                    gid = self.group(peer_spec(self.p.namespace, peer))
                    peers.append((SetMatch(self.peer_set(gid, fam), (peer_dir,)), self.target if ingress else gid))
            ports: tuple[PortSpec | None, ...] = rule.ports or (None,)
            for match, port_group in peers:
                for ps in ports:
                    sets: tuple[SetMatch, ...] = (match,) if match else ()
                    proto: Proto | None = None
                    dport: tuple[int, int] | None = None
                    if ps is not None:
                        proto = "tcp" if ps.protocol == "TCP" else "udp" if ps.protocol == "UDP" else "sctp"
                        if isinstance(ps.port, int):
                            dport = (ps.port, ps.end_port or ps.port)
                        elif isinstance(ps.port, str):
                            gid = port_group or self.group(ALL_PODS)
                            sets += (SetMatch(self.port_set(gid, ps.port, proto, fam), ("dst", "dst")),)
                    out.append(Rule("MARK", proto=proto, dport=dport, sets=sets, set_mark=(bit, bit), comment=comment))
        return tuple(out)

    def family(self, fam: Family) -> FamilyPolicy:
        p = self.p
        tset = naming.set_name(naming.TARGET, fam, self.target)
        chains: list[Chain] = []
        jumps: dict[str, Rule | None] = {"ingress": None, "egress": None}
        for direction, on, rules in (("egress", p.isolates_egress, p.egress), ("ingress", p.isolates_ingress, p.ingress)):
            if not on:
                continue
            body = self.rules(direction, rules, fam)
            if not body:
                continue
            cname = naming.policy_chain(direction, self.key)
            chains.append(Chain(cname, body))
            jumps[direction] = Rule("JUMP", target=cname,
                                    sets=(SetMatch(tset, ("src" if direction == "egress" else "dst",)),),
                                    comment=f"{self.key} {direction}"[:MAX_COMMENT])
        names = {sm.set for c in chains for r in c.rules for sm in r.sets}
        return FamilyPolicy(tuple(chains), jumps["egress"], jumps["ingress"], tuple(sorted(names)))


def compile_policy(p: NetworkPolicy, settings: CompileSettings, families: tuple[Family, ...]) -> CompiledPolicy:
    b = _Builder(p, settings)
    fams = {fam: b.family(fam) for fam in families}
    names = tuple(sorted({n for fp in fams.values() for n in fp.sets}))
    jumps = any(fp.egress_jump is not None or fp.ingress_jump is not None for fp in fams.values())
    return CompiledPolicy(b.key, b.target, p.isolates_ingress, p.isolates_egress, fams,
                          b.groups, b.dynamic, b.static, names, jumps)


def uses_ipv6(p: NetworkPolicy) -> bool:
    """Whether the policy names an IPv6 ipBlock."""
    return any(peer.ip_block is not None and block_family(peer.ip_block) == "inet6"
               for rule in p.ingress + p.egress for peer in rule.peers)
