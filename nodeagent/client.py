"""The agent's end of the controller stream: receive, verify, apply, acknowledge.

One :class:`AgentClient` per agent process.  :meth:`AgentClient.run`
loops forever:

    pick a controller address (flags in order, each DNS name expanded to
    all its addresses, rotating after every failure)
    -> open Distribution.Stream, send Hello(node, digest of what we enforce)
    -> InSync        : nothing to write; adopt the controller's version
       Snapshot      : validate, check digest, apply, ack
       Delta         : base version/digest must be ours; apply to our last
                       good state, validate, check digest, apply, ack
       Rejected/bad  : keep the last good state, ack the error, ask for a
                       fresh snapshot (resync)
    -> stream ends or fails: jittered exponential backoff, then again;
       ended by the controller on purpose (UNAVAILABLE with trailing
       metadata ``stockade-reconnect``: the admission ran out, the token
       expired or the stream reached its maximum age): a short pause and
       the same controller again, with the token as it is now.

It never clears or touches the dataplane on its own: while disconnected
the kernel keeps the last good state (fail-static), and a reconnect whose
hello digest matches costs no kernel write.  Applying is delegated to an
:class:`Applier` (``nodeagent.dataplane.Dataplane`` in the agent; a
recording double in tests).

It does not speak protobuf itself (``stockade.wire.codec`` does) and does
not run servers (``nodeagent.service``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from nodeagent.channel_auth import ChannelSecurity
from stockade import backoff
from stockade.state import NodeDelta, NodeState, StateError, apply_delta
from stockade.v1 import stockade_pb2_grpc
from stockade.wire import codec, grpcutil
from stockade.wire.digest import Carried
from stockade.wire.messages import (
    FEATURES,
    Ack,
    Delta,
    Hello,
    HostCheck,
    InSync,
    Rejected,
    Snapshot,
    Update,
    WireError,
)
from stockade.wire.verify import validate_after_delta, validate_state

log = logging.getLogger("stockade.agent.client")

# Trailing metadata key of a stream the controller ended on purpose
# (controller.stream_lifetime.RECONNECT_METADATA; the agent never imports the controller).
RECONNECT_METADATA = "stockade-reconnect"
# An ended-on-purpose stream shorter than this counts as a failure (backoff):
# a controller that keeps ending streams at once must not make us spin.
MIN_EXPIRED_STREAM = 1.0

# Longest Ack.error (and last_error) sent back: the controller logs and stores it,
# and an ack must stay far below gRPC's 4 MiB receive limit.
MAX_ACK_ERROR = 2048


class ApplyResult(Protocol):
    """What ``Applier.apply`` returns (``nodeagent.dataplane.ApplyResult`` fits)."""

    @property
    def ok(self) -> bool: ...
    @property
    def error(self) -> str: ...
    @property
    def seconds(self) -> float: ...
    @property
    def writes(self) -> int: ...
    @property
    def counts(self) -> Mapping[str, int]: ...


class Applier(Protocol):
    """Makes the kernel enforce a state; ``nodeagent.dataplane.Dataplane`` in the agent.
    ``digest`` is the state's digest, already verified (saves computing it again)."""

    async def apply(self, state: NodeState, digest: str = "") -> Any: ...


@dataclass
class ClientSettings:
    """``controllers``: ``HOST:PORT`` strings, tried in order (a name with
    several addresses counts as several).  Backoff after a failed or
    ended stream: ``backoff_initial`` doubling up to ``backoff_max``,
    each delay multiplied by a random factor in [1 - jitter, 1]; reset
    once a stream delivered an update and stayed open ``stable_after``
    seconds (so two agents of one node, e.g. during a surge upgrade, that
    keep replacing each other's stream back off instead of spinning)."""

    node: str
    controllers: Sequence[str]
    agent_version: str = ""
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.5
    connect_timeout: float = 5.0
    stable_after: float = 10.0
    # TLS and token (nodeagent.channel_auth.ChannelSecurity); None: plaintext, no token.
    security: ChannelSecurity | None = None


async def resolve(addresses: Sequence[str]) -> list[str]:
    """Every ``HOST:PORT`` expanded to ``IP:PORT`` targets (DNS names with
    several addresses give several); a name that does not resolve is kept
    as is (grpc retries the name itself)."""
    loop = asyncio.get_running_loop()
    out: list[str] = []
    for a in addresses:
        host, port = grpcutil.parse_hostport(a, 7700)
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), 5.0)
        except (OSError, TimeoutError):
            infos = []
        ips: list[str] = []
        for info in infos:
            ip = str(info[4][0])
            if ip not in ips:
                ips.append(ip)
        if not ips:
            out.append(a)
        for ip in ips:
            t = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            if t not in out:
                out.append(t)
    return out


class AgentClient:
    """See the module docstring.  Status attributes are read by the agent's
    debug service and metrics: ``state``/``version``/``digest`` (the last
    good state and the controller's version of it), ``connected``,
    ``controller`` (current target), ``last_error``, ``last_apply_unix``,
    ``counts``, ``applies``/``rejects``/``connects``."""

    def __init__(self, settings: ClientSettings, applier: Applier, *,
                 host_checks: Callable[[], Sequence[HostCheck]] = tuple,
                 drift_repairs: Callable[[], int] = lambda: 0,
                 on_applied: Callable[[NodeState, int, str], Awaitable[None] | None] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None,
                 initial: tuple[NodeState, int, str] | None = None) -> None:
        if not settings.node:
            raise ValueError("agent client: node name is empty")
        if not settings.controllers:
            raise ValueError("agent client: no controller address")
        self.settings = settings
        self.applier = applier
        self.host_checks = host_checks
        self.drift_repairs = drift_repairs
        self.on_applied = on_applied
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.state: NodeState | None = None
        self.version = 0
        self.digest = ""
        if initial is not None:
            self.state, self.version, self.digest = initial
        self.connected = False
        self.controller = ""
        self.last_error = ""
        self.last_apply_unix = 0.0
        self.counts: dict[str, int] = {}
        self.applies = 0
        self.rejects = 0
        self.connects = 0
        self.attempts = 0
        self.expired = 0  # streams the controller ended on purpose ("reconnect now")
        self.delays: list[float] = []  # backoff delays taken (most recent last; bounded)
        self._carried: Carried | None = None  # the digest of ``state``, carried through deltas (re-hash only what changed)
        self._call: Any = None
        self._applying: asyncio.Future[Any] | None = None
        self._stopping = False
        self.synced = asyncio.Event()  # set once this process enforces a controller-confirmed state

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        """Connect, stream, back off, again; until :meth:`stop`."""
        failures = 0
        index = 0
        while not self._stopping:
            targets = await resolve(self.settings.controllers)
            target = targets[index % len(targets)]
            self.attempts += 1
            delivered = False
            expired = ""
            opened = time.monotonic()
            try:
                delivered = await self._session(target)
                if not self._stopping:
                    log.warning("stream to controller %s ended; reconnecting", target)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a failed connection or stream: back off, keep enforcing
                if self._stopping:
                    break
                expired = _reconnect_reason(e)
                if expired:
                    self.expired += 1
                    log.info("controller %s ended the stream on purpose (%s); reconnecting now", target,
                             e.details() if isinstance(e, grpc.aio.AioRpcError) else expired)
                else:
                    self.last_error = f"controller {target}: {_describe(e)}"
                    log.warning("%s (keeping the last applied state)", self.last_error)
            finally:
                self.connected = False
                self._call = None
            if self._stopping:
                break
            lived = time.monotonic() - opened
            if expired and lived >= MIN_EXPIRED_STREAM:
                failures = 0  # not a failure: the same controller again after a short pause
            else:
                stable = delivered and lived >= self.settings.stable_after
                failures = 0 if stable else failures + 1
                index += 1
            delay = self.backoff(failures)
            self.delays = [*self.delays[-99:], delay]
            await self.sleep(delay)

    def backoff(self, failures: int) -> float:
        """The pause after ``failures`` consecutive failed attempts (0: a short pause)."""
        s = self.settings
        if failures == 0:
            return s.backoff_initial / 4 * (1.0 - s.jitter * self.rng.random())
        return backoff.jittered(s.backoff_initial, s.backoff_max, failures - 1, s.jitter, self.rng.random())

    def stop(self) -> None:
        """Stop reconnecting and end the current stream; never touches the dataplane."""
        self._stopping = True
        if self._call is not None:
            self._call.cancel()

    async def drain(self) -> None:
        """Wait for an apply in progress (if any) to finish."""
        fut = self._applying
        if fut is not None and not fut.done():
            await asyncio.wait({fut})

    # ---------------------------------------------------------------- one stream

    async def _session(self, target: str) -> bool:
        """One stream to ``target``; True when at least one update arrived."""
        delivered = False
        sec = self.settings.security
        channel = (sec.open(target, grpcutil.CLIENT_OPTIONS) if sec is not None
                   else grpc.aio.insecure_channel(target, options=grpcutil.CLIENT_OPTIONS))
        async with channel:
            await asyncio.wait_for(channel.channel_ready(), self.settings.connect_timeout)
            stub = stockade_pb2_grpc.DistributionStub(channel)  # type: ignore[no-untyped-call]
            # the token is re-read at every connect: the kubelet rotates it
            call = stub.Stream(metadata=sec.metadata() if sec is not None else None)
            self._call = call
            hello = Hello(self.settings.node, self.settings.agent_version,
                          self.digest if self.state is not None else "", tuple(self.host_checks()), FEATURES)
            await call.write(codec.encode_hello(hello))
            self.connected, self.controller = True, target
            self.connects += 1
            log.info("connected to controller %s as node %s (enforcing %s)", target, self.settings.node,
                     f"version {self.version}, digest {self.digest[:12]}" if self.state is not None else "nothing yet")
            asm = codec.Assembler()
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    return delivered
                if msg is None:
                    # grpc.aio's read() gives None when the response deserializer
                    # raised (it logs "Exception deserializing message!"): not EOF
                    raise WireError("undecodable message from the controller (not a ControllerMessage)")
                update = asm.feed(msg)
                del msg  # a snapshot can be one large message: do not hold it while idle
                if update is None:
                    continue
                delivered = True
                ack = await self.handle(update)
                await call.write(codec.encode_ack(ack))

    async def handle(self, u: Update) -> Ack:
        """Verify and apply one complete update; the ack to send back."""
        if isinstance(u, Rejected):
            return self._reject(u.version, f"malformed update: {u.error}")
        if isinstance(u, InSync):
            if self.state is None or u.digest != self.digest:
                return self._reject(u.version, f"in_sync for digest {u.digest[:12]} but this agent enforces "
                                               f"{self.digest[:12] or 'nothing'}")
            self.version = u.version
            self.synced.set()
            log.info("in sync with controller at version %d (digest %s): nothing to apply",
                     u.version, u.digest[:12])
            return self._ok(u.version, 0.0, 0)
        if isinstance(u, Snapshot):
            new = u.state
            try:
                if new.node != self.settings.node:
                    raise StateError(f"snapshot is for node {new.node!r}, this is {self.settings.node!r}")
                validate_state(new)
            except StateError as e:
                return self._reject(u.version, f"snapshot version {u.version}: {e}")
            return await self._apply(new, u.version, u.digest, "snapshot")
        assert isinstance(u, Delta)
        if self.state is None or u.base_version != self.version or u.base_digest != self.digest:
            return self._reject(u.version, f"delta {u.base_version}->{u.version} (base digest {u.base_digest[:12]}) "
                                           f"does not fit version {self.version} (digest {self.digest[:12] or '-'})")
        try:
            new = apply_delta(self.state, u.delta)
            validate_after_delta(new, u.delta)
        except StateError as e:
            return self._reject(u.version, f"delta {u.base_version}->{u.version}: {e}")
        return await self._apply(new, u.version, u.digest, "delta", u.delta)

    async def _apply(self, new: NodeState, version: int, want_digest: str, kind: str,
                     delta: NodeDelta | None = None) -> Ack:
        base = self._carried
        if delta is not None and base is not None and self.state is not None and base.digest == self.digest:
            carried = base.after(self.state, delta, new)
        else:
            carried = Carried.of(new)
        got = carried.digest
        if got != want_digest:
            return self._reject(version, f"{kind} version {version}: digest {got[:12]} of the result differs "
                                         f"from the controller's {want_digest[:12]}")
        t0 = time.monotonic()
        # shielded: cancelling the client (shutdown) never cuts an apply in
        # half; ``drain`` waits for it instead
        fut = asyncio.ensure_future(self.applier.apply(new, got))
        self._applying = fut
        try:
            r = await asyncio.shield(fut)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the dataplane raised instead of reporting: still an error to ack
            r = None
            err = f"apply raised {_describe(e)}"
        else:
            err = "" if r.ok else _bounded(r.error or "apply failed")
        seconds: float = float(getattr(r, "seconds", 0.0) or (time.monotonic() - t0))
        writes = int(getattr(r, "writes", 0) or 0)
        if err:
            self.last_error = _bounded(f"{kind} version {version}: {err}")
            self.rejects += 1
            log.error("apply of %s version %d failed, keeping the last good state: %s", kind, version, err)
            return Ack(version, False, self.last_error, self.digest, self.version, seconds,
                       self.counts, writes, resync=True, drift_repairs=self.drift_repairs())
        self.state, self.version, self.digest, self._carried = new, version, got, carried
        self.counts = {k: int(v) for k, v in dict(getattr(r, "counts", None) or {}).items()}
        self.last_apply_unix = time.time()
        self.last_error = ""
        self.applies += 1
        self.synced.set()
        log.info("applied %s version %d (digest %s) in %.3fs, %d kernel writes",
                 kind, version, got[:12], seconds, writes)
        if self.on_applied is not None:
            res = self.on_applied(new, version, got)
            if res is not None:
                await res
        return self._ok(version, seconds, writes)

    def _ok(self, version: int, seconds: float, writes: int) -> Ack:
        return Ack(version, True, "", self.digest, self.version, seconds, self.counts, writes,
                   drift_repairs=self.drift_repairs())

    def _reject(self, version: int, error: str) -> Ack:
        error = _bounded(error)
        self.last_error = error
        self.rejects += 1
        log.error("rejected update version %d, keeping the last good state and asking for a snapshot: %s",
                  version, error)
        return Ack(version, False, error, self.digest, self.version, 0.0, self.counts, 0, resync=True,
                   drift_repairs=self.drift_repairs())

    def status(self) -> dict[str, Any]:
        return {"node": self.settings.node, "connected": self.connected, "controller": self.controller,
                "version": self.version, "digest": self.digest, "counts": dict(self.counts),
                "last_error": self.last_error, "last_apply_unix": self.last_apply_unix,
                "applies": self.applies, "rejects": self.rejects, "connects": self.connects,
                "streams_expired": self.expired}


def _bounded(error: str) -> str:
    """``error`` cut to ``MAX_ACK_ERROR`` characters: a last line of defence
    (validation and codec messages already cut the names they echo)."""
    if len(error) <= MAX_ACK_ERROR:
        return error
    return f"{error[:MAX_ACK_ERROR - 40]}\u2026 ({len(error)} chars)"


def _reconnect_reason(e: BaseException) -> str:
    """The reason the controller gave for ending the stream on purpose ("" otherwise)."""
    if not isinstance(e, grpc.aio.AioRpcError) or e.code() != grpc.StatusCode.UNAVAILABLE:
        return ""
    for k, v in e.trailing_metadata() or ():
        if k == RECONNECT_METADATA:
            reason = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            return reason or "expired"
    return ""


def _describe(e: BaseException) -> str:
    if isinstance(e, grpc.aio.AioRpcError):
        return f"{e.code().name}: {e.details()}"
    if isinstance(e, TimeoutError):
        return "timed out connecting"
    return f"{type(e).__name__}: {e}"

