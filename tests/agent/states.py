"""Small NodeStates built by hand, in the rule layout the compiler uses:
FORWARD (and optionally INPUT) hook -> STOCKADE-FORWARD: established
RETURN; traffic to a selected pod goes through the policy chain, which
marks what it allows; a selected pod's unmarked traffic is dropped."""

from __future__ import annotations

from stockade.state import Chain, Family, FamilyState, Hook, IPSet, NodeState, Proto, Rule, SetMatch

MARK = 0x10000


def policy_state(node: str = "n1", *, selected: frozenset[str] = frozenset({"198.18.0.2"}),
                 peers: frozenset[str] = frozenset({"198.18.0.3"}), proto: Proto = "tcp",
                 port: tuple[int, int] | None = (8080, 8080), family: Family = "inet",
                 peer_set: str = "stkpeer", sel_set: str = "stksel", extra_sets: dict[str, IPSet] | None = None,
                 hooks: tuple[str, ...] = ("FORWARD",), comment: str = "ns/policy-a") -> NodeState:
    sets = {
        sel_set: IPSet(sel_set, "hash:ip", family, selected),
        peer_set: IPSet(peer_set, "hash:ip", family, peers),
        **(extra_sets or {}),
    }
    fwd = Chain("STOCKADE-FORWARD", (
        Rule("RETURN", ctstate=("RELATED", "ESTABLISHED")),
        Rule("JUMP", target="STOCKADE-POL-A", sets=(SetMatch(sel_set, ("dst",)),)),
        Rule("DROP", sets=(SetMatch(sel_set, ("dst",)),), mark=(MARK, MARK, True)),
    ))
    pol = Chain("STOCKADE-POL-A", (
        Rule("MARK", proto=proto, dport=port if proto else None, sets=(SetMatch(peer_set, ("src",)),),
             set_mark=(MARK, MARK), comment=comment),
    ))
    fs = FamilyState({c.name: c for c in (fwd, pol)},
                     tuple(Hook(b, "STOCKADE-FORWARD", 1) for b in hooks))  # type: ignore[arg-type]
    empty = FamilyState()
    return NodeState(node, sets, fs if family == "inet" else empty, fs if family == "inet6" else empty)
