"""Feed one cluster to both deciders: the oracle and engine + walker."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from controller import oracle
from controller.engine import Engine
from controller.model import Namespace, NetworkPolicy, Node, Pod, Protocol
from controller.walker import Packet, WalkResult, walk
from stockade.state_validation import validate


@dataclass
class Both:
    cluster: oracle.Cluster
    engine: Engine

    def walked(self, src: str, dst: str, port: int, protocol: Protocol = "TCP",
               family: int | None = None) -> tuple[oracle.Decision, WalkResult]:
        d = oracle.decide(self.cluster, src, dst, port, protocol, family)
        s, t = d.src, d.dst
        packet = Packet(s.ip, t.ip, protocol.lower(), port, src_kind="pod" if s.pod else "host",
                        dst_kind="pod" if t.pod else "host")
        w = walk(self.engine.node_state(s.node) if s.node else None,
                 self.engine.node_state(t.node) if t.node else None, packet)
        return d, w


def both(namespaces: Iterable[Namespace] = (), pods: Iterable[Pod] = (), nodes: Iterable[Node] = (),
         policies: Iterable[NetworkPolicy] = ()) -> Both:
    namespaces, pods, nodes, policies = list(namespaces), list(pods), list(nodes), list(policies)
    e = Engine()
    e.load(namespaces, nodes, pods, policies)
    for st in e.flush().values():
        validate(st)
    return Both(oracle.Cluster(namespaces, pods, nodes, policies), e)
