"""The values a case file is read into: :class:`Case` and its parts.

What: frozen dataclasses for the declared pods (and their ports), outside
hosts, probes, step actions and steps, plus the vocabulary they use
(PROTOCOLS, ACTION_KINDS, ``Expect``), exactly as
``shared/cases/FORMAT.md`` (version 1) defines them.

Why its own module: both case runners (``stockade evaluate`` and
``stockade lab run``), the loader and the world share these types and
nothing else of each other.

What not: no checking (``case_fields``, ``case_format``), no behaviour;
users import them from ``stockade.cases``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

PROTOCOLS = ("TCP", "UDP", "SCTP")
ACTION_KINDS = ("apply", "delete", "label-pod", "label-namespace", "create-pod", "delete-pod")
Expect = Literal["allow", "deny"]


@dataclass(frozen=True, slots=True)
class PortDecl:
    port: int
    protocol: str = "TCP"
    name: str = ""


@dataclass(frozen=True, slots=True)
class PodDecl:
    namespace: str
    name: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    ports: tuple[PortDecl, ...] = ()
    node: int | None = None
    host_network: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class External:
    name: str
    ip: str
    ports: tuple[PortDecl, ...] = ()


@dataclass(frozen=True, slots=True)
class Probe:
    """``src``/``dst`` are ``NS/POD`` or ``external:NAME`` (the file's
    ``from``/``to``); ``field`` is where the probe sits in the file."""

    src: str
    dst: str
    port: int
    protocol: str
    expect: Expect
    field: str = ""


@dataclass(frozen=True, slots=True)
class Action:
    kind: str  # one of ACTION_KINDS
    body: Any
    field: str = ""


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    actions: tuple[Action, ...] = ()
    probes: tuple[Probe, ...] = ()


@dataclass(frozen=True, slots=True)
class Case:
    file: str
    name: str
    nodes: int = 2
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict, hash=False)
    pods: tuple[PodDecl, ...] = ()
    external: tuple[External, ...] = ()
    policies: tuple[Any, ...] = ()
    probes: tuple[Probe, ...] = ()
    steps: tuple[Step, ...] = ()
    source: str = ""
    notes: str = ""
