"""What travels on the controller <-> agent stream, as our own frozen values.

The protobuf classes in ``stockade.v1`` stay inside ``stockade.wire.codec``;
everything else (the distributor, the agent's client, tests) speaks these
dataclasses.  A :class:`Snapshot` or :class:`Delta` here is already
reassembled from its parts; splitting and joining parts is the codec's job.

Nothing here does I/O or knows about gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stockade.state import NodeDelta, NodeState


class WireError(ValueError):
    """A message that does not follow the wire contract (names what is wrong)."""


# The agent accepts the *Complete marker inside the last part (a small
# update is one message instead of two).  Agents that do not say so get
# the marker as a message of its own.
INLINE_COMPLETE = "inline-complete"
FEATURES = (INLINE_COMPLETE,)  # what this version's agent announces


@dataclass(frozen=True, slots=True)
class HostCheck:
    """One result of the agent's host checks (ipset present, iptables backend, ...)."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message of every stream: who the agent is and what it enforces."""

    node: str
    agent_version: str
    applied_digest: str = ""  # "" when nothing was applied yet
    host_checks: tuple[HostCheck, ...] = ()
    features: tuple[str, ...] = ()  # optional wire features the agent accepts (see FEATURES)


@dataclass(frozen=True, slots=True)
class Ack:
    """The agent's answer to one version (snapshot, delta or in-sync).

    ``ok`` False means the version was not applied; ``error`` says why and
    ``applied_version``/``applied_digest`` still name what *is* enforced
    (the last good state).  ``resync`` asks the controller for a fresh
    snapshot (the agent could not use what it got)."""

    version: int
    ok: bool
    error: str = ""
    applied_digest: str = ""
    applied_version: int = 0
    apply_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    writes: int = 0
    resync: bool = False
    drift_repairs: int = 0


@dataclass(frozen=True, slots=True)
class InSync:
    """The agent already enforces the desired state ``version`` (digest matched)."""

    node: str
    version: int
    digest: str
    replica: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A complete desired state (all parts received)."""

    state: NodeState
    version: int
    digest: str
    replica: str = ""
    parts: int = 1


@dataclass(frozen=True, slots=True)
class Delta:
    """base_version -> version; ``digest`` is the digest after applying it."""

    delta: NodeDelta
    base_version: int
    base_digest: str
    version: int
    digest: str
    replica: str = ""
    parts: int = 1


@dataclass(frozen=True, slots=True)
class Rejected:
    """An update for ``version`` that could not be reassembled (``error`` says why).

    The assembler returns it when the update's final marker arrives, so
    the agent rejects each bad update exactly once."""

    version: int
    error: str


Update = InSync | Snapshot | Delta | Rejected
AgentMessage = Hello | Ack
