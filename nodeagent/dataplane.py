"""The agent's apply loop: desired NodeState -> kernel, safely, and kept so.

API (what ``nodeagent.client`` / ``nodeagent.main`` call)::

    dp = Dataplane(kernel, DataplaneSettings(...), clock=RealClock())
    report = await dp.start()        # host checks, backend detection, reads what
                                     # exists, verifies the persisted state; NO write
    result = await dp.apply(state)   # full desired state -> ApplyResult; never raises
                                     # for kernel errors or bad input; on failure the
                                     # previous state stays in force and the state is
                                     # retried with backoff by run_periodic_reconcile
    result = await dp.reconcile()    # re-read, repair drift; writes nothing if in sync
    await dp.run_periodic_reconcile()  # long-lived: every period, shortly after each
                                     # change, and failed applies with backoff
    dp.applied_digest                # digest of the state the kernel holds ("" unknown)
    dp.status()                      # dict for the status page / metrics
    await dp.read_counters()         # per-rule packets (iptables-save -c), set member counters
    await cleanup(kernel)            # `stockade agent cleanup`: remove all we own
    validate_incoming(state)         # StateError for garbage (before apply)

How a round works: the plan (``plan.make_plan``) is the difference between
the desired state and the kernel as last read or as believed after the
last successful write (Felix's Table: cache updated only after success,
dropped after a failure so the next attempt re-reads).  Phases: one
``ipset restore`` (new sets, shadows, in-place members, swaps), one
``iptables-restore --noflush`` per family (atomic COMMIT), and only for an
atomic switch a second ipset and iptables round, then one ``ipset
restore`` for removals.  After success: the state is persisted (state dir),
conntrack entries of pods whose protection shrank are cut, and a
reconcile is scheduled.

Fail-static: nothing here ever flushes on stop or error; before the first
complete desired state arrives nothing is written, and what the kernel
holds (an earlier agent's rules) stays in force.  Not here: the gRPC stream
(``client``), the process and flags (``main``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from stockade.state import (
    FAMILIES,
    Family,
    NodeState,
    StateError,
    count,
)
from stockade.wire.digest import DigestCache

from . import conntrack, hostcheck, state_store
from . import plan as planmod
from .backend_detect import resolve
from .kernel import CmdResult, Kernel, Tools
from .kernel_read import BlockCache, KernelView, KFamily, ParseError, parse_ipset_save, parse_iptables_save
from .restore_builder import FamilyWrite, RenderCache, expected_view, iptables_restore_text
from .validate import validate_incoming

__all__ = ["ApplyResult", "Clock", "Dataplane", "DataplaneSettings", "RealClock", "cleanup", "read_view",
           "validate_incoming"]

log = logging.getLogger("stockade.agent.dataplane")


class Clock(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(frozen=True, slots=True)
class DataplaneSettings:
    """``backend``: auto|nft|legacy|python-iptables.  ``reconcile_period``:
    seconds between full re-reads.  ``state_dir``: where the last applied
    state is kept.  ``bridged``: pods sit on a Linux bridge (kubenet), so
    br_netfilter is checked.  ``settle``: a reconcile follows each change
    after this delay.  ``retry_min``/``retry_max``: backoff of failed
    applies.  ``cut_conntrack``: delete entries on tightening.
    ``command_timeout``: bound on every kernel command.  ``netns``: see
    ``iptc_backend`` (the in-process backend cannot use a command prefix)."""

    backend: str = "auto"
    reconcile_period: float = 60.0
    state_dir: str = "/var/lib/stockade"
    bridged: bool = False
    settle: float = 1.0
    retry_min: float = 0.5
    retry_max: float = 30.0
    cut_conntrack: bool = True
    command_timeout: float = 30.0
    netns: str = ""  # python-iptables only: network namespace to write in (tests, benchmarks)
    iptc_counters: bool = False  # python-iptables only: read counters through libiptc, not iptables-save -c


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """``failed_input``: the exact restore input of the command that failed.
    ``writes``: kernel-mutating commands run.  ``repairs``: objects fixed by a
    reconcile.  ``plan``: what was written (``Plan.summary``)."""

    ok: bool
    error: str = ""
    failed_input: str = ""
    seconds: float = 0.0
    writes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    digest: str = ""
    repairs: int = 0
    plan: dict[str, int] = field(default_factory=dict)
    conntrack_cuts: int = 0


class ApplyError(Exception):
    def __init__(self, result: CmdResult, stdin: str) -> None:
        super().__init__(result.describe())
        self.result = result
        self.stdin = stdin


async def read_view(kernel: Kernel, tools: Tools, timeout: float = 30.0, cache: BlockCache | None = None) -> KernelView:
    """Everything we own in the kernel, IPv4 and IPv6 (three reads at once).
    ``cache``: skip parsing sets whose save text did not change."""
    ips, v4, v6 = await asyncio.gather(
        kernel.run(["ipset", "save"], timeout=timeout),
        kernel.run(tools.save_argv("inet"), timeout=timeout),
        kernel.run(tools.save_argv("inet6"), timeout=timeout))
    for r in (ips, v4):
        if not r.ok:
            raise ParseError(f"reading the kernel failed: {r.describe()}")
    if not v6.ok:  # a host without IPv6: nothing of ours there (a v6 write will fail and be reported)
        log.debug("no IPv6 filter table: %s", v6.describe())
    return KernelView(parse_ipset_save(ips.stdout, cache=cache), parse_iptables_save(v4.stdout),
                      parse_iptables_save(v6.stdout) if v6.ok else KFamily())


class Dataplane:
    """See module docstring.  One instance per agent; all public coroutines
    are serialised by one lock (one writer)."""

    def __init__(self, kernel: Kernel, settings: DataplaneSettings, clock: Clock | None = None) -> None:
        self.kernel = kernel
        self.settings = settings
        self.clock: Clock = clock or RealClock()
        self.tools = Tools("nft")
        self.backend = ""
        self.backend_reason = ""
        self.checks: list[hostcheck.Check] = []
        self._desired: NodeState | None = None  # the state the kernel holds (or converges to after repair)
        self._pending: NodeState | None = None  # a state whose apply failed, to retry
        self._believed: KernelView | None = None  # kernel view after our last write; None: re-read
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._backoff = settings.retry_min
        self._iptc: Any = None
        self._dcache = DigestCache()
        self._render = RenderCache()
        self._blocks = BlockCache()
        self._encoder = state_store.Encoder()
        self._dmemo: list[tuple[NodeState, str]] = []  # the last few (state, digest), by identity
        self._validated: NodeState | None = None  # the last state that passed validation
        self._persist_task: asyncio.Task[None] | None = None
        self._persist_next: NodeState | None = None
        self.stats: dict[str, Any] = {
            "applies": 0, "apply_failures": 0, "reconciles": 0, "drift_repairs": 0,
            "kernel_writes": 0, "conntrack_cuts": 0, "last_apply_time": 0.0, "last_apply_seconds": 0.0,
            "last_error": "", "last_failed_input": "", "last_reconcile_time": 0.0, "adopted": "",
        }

    # ------------------------------------------------------------------ start
    async def start(self) -> dict[str, Any]:
        """Checks, backend, adoption.  Writes nothing."""
        self.checks = await hostcheck.run_checks(self.kernel, self.settings.bridged)
        det = await resolve(self.kernel, self.settings.backend)
        self.backend, self.backend_reason = det.flavour, det.reason
        self.tools = Tools("legacy" if det.flavour in ("legacy", "python-iptables") else "nft")
        if det.flavour == "python-iptables":
            from .iptc_backend import IptcWriter

            self._iptc = IptcWriter(netns=self.settings.netns or None)
        view = await read_view(self.kernel, self.tools, self.settings.command_timeout, self._blocks)
        self._believed = view
        try:
            saved = state_store.load(self.settings.state_dir)
        except StateError as e:
            log.warning("ignoring the saved state: %s", e)
            saved = None
        if saved is not None and planmod.make_plan(saved, view).is_empty():
            self._desired = saved
            self.stats["adopted"] = "kernel matches the saved state " + self._digest(saved)[:12]
        elif saved is not None:
            self.stats["adopted"] = "kernel differs from the saved state; kept as is until the first state"
        else:
            self.stats["adopted"] = "no saved state; kernel kept as is until the first state"
        log.info("dataplane started: backend %s (%s); %s", self.backend, self.backend_reason, self.stats["adopted"])
        return {"backend": self.backend, "backend_reason": self.backend_reason,
                "checks": [vars_check(c) for c in self.checks], "adopted": self.stats["adopted"],
                "applied_digest": self.applied_digest,
                "kernel": {"sets": len(view.sets), "chains": len(view.v4.chains) + len(view.v6.chains)}}

    def _remember(self, state: NodeState, digest: str) -> None:
        self._dmemo = [(state, digest), *[(st, d) for st, d in self._dmemo if st is not state][:3]]

    def _digest(self, state: NodeState) -> str:
        for st, d in self._dmemo:
            if st is state:
                return d
        d = self._dcache.digest(state, evict=False)
        self._remember(state, d)
        live = len(state.sets) + len(state.v4.chains) + len(state.v6.chains)
        if len(self._dcache) > 3 * live + 64:  # drop fragments no remembered state uses, now and then
            self._dcache.retain(st for st, _ in self._dmemo)
        return d

    @property
    def applied_digest(self) -> str:
        return self._digest(self._desired) if self._desired is not None else ""

    # ------------------------------------------------------------------ apply
    async def apply(self, state: NodeState, digest: str = "") -> ApplyResult:
        """Make the kernel enforce ``state``.  ``digest``: its digest when the
        caller already computed it (the stream client verified it against the
        controller's): not computed again."""
        t0 = time.perf_counter()
        if digest:
            self._remember(state, digest)
        try:
            validate_incoming(state, self._validated)
            self._validated = state
        except StateError as e:
            self.stats["last_error"] = f"rejected invalid state: {e}"
            log.error("rejected an invalid desired state (last good state kept): %s", e)
            return ApplyResult(False, f"invalid state: {e}", digest=self.applied_digest)
        async with self._lock:
            res = await self._converge(state, fresh_read=False, t0=t0)
        self.stats["applies"] += 1
        if res.ok:
            self._changed.set()
        return res

    async def reconcile(self) -> ApplyResult:
        """Re-read the kernel; repair what drifted (or retry a failed apply)."""
        async with self._lock:
            self.stats["reconciles"] += 1
            self.stats["last_reconcile_time"] = time.time()
            target = self._pending or self._desired
            if target is None:  # nothing received yet: look, never touch
                try:
                    self._believed = await read_view(self.kernel, self.tools, self.settings.command_timeout, self._blocks)
                except ParseError as e:
                    return ApplyResult(False, str(e))
                return ApplyResult(True, digest="")
            return await self._converge(target, fresh_read=True)

    async def _converge(self, state: NodeState, fresh_read: bool, t0: float | None = None) -> ApplyResult:
        """``t0``: when the state arrived (``seconds`` counts from there)."""
        t0 = time.perf_counter() if t0 is None else t0
        try:
            if fresh_read or self._believed is None:
                self._believed = await read_view(self.kernel, self.tools, self.settings.command_timeout, self._blocks)
            plan = planmod.make_plan(state, self._believed, self._render)
        except ParseError as e:
            return self._failed(state, str(e), "", 0, t0)
        if plan.is_empty():
            self._succeeded(state)
            return ApplyResult(True, seconds=time.perf_counter() - t0, counts=count(state), digest=self._digest(state))
        repairing = fresh_read and self._pending is None and self._desired is not None \
            and self._digest(self._desired) == self._digest(state)
        summary = plan.summary()
        writes = 0
        try:
            writes = await self._execute(state, plan)
        except ApplyError as e:
            return self._failed(state, str(e), e.stdin, writes, t0)
        seconds = time.perf_counter() - t0
        self.stats["kernel_writes"] += writes
        old = self._desired
        self._believed = expected_view(state, self._render)
        self._succeeded(state)
        repairs = 0
        if repairing:
            repairs = sum(summary.values())
            self.stats["drift_repairs"] += repairs
            log.warning("repaired drift: %s", {k: v for k, v in summary.items() if v})
        self._persist(state)
        cuts = 0
        if self.settings.cut_conntrack and old is not None and old is not state:
            ips = conntrack.affected(old, state)
            if any(ips.values()):
                cuts, errors = await conntrack.cut(self.kernel, ips)
                self.stats["conntrack_cuts"] += cuts
                for err in errors[:5]:
                    log.warning("conntrack cut failed: %s", err)
        self.stats["last_apply_time"] = time.time()
        self.stats["last_apply_seconds"] = seconds
        return ApplyResult(True, seconds=seconds, writes=writes, counts=count(state), digest=self._digest(state),
                           repairs=repairs, plan=summary, conntrack_cuts=cuts)

    def _persist(self, state: NodeState) -> None:
        """Save ``state`` in the state dir off the apply path (a thread; the
        latest state wins).  A crash before it lands only means the next
        start cannot vouch for the kernel and waits for a full state."""
        self._persist_next = state
        if self._persist_task is None or self._persist_task.done():
            self._persist_task = asyncio.create_task(self._persist_loop(), name="agent-persist-state")

    async def _persist_loop(self) -> None:
        while self._persist_next is not None:
            st, self._persist_next = self._persist_next, None
            try:
                await asyncio.to_thread(state_store.save, self.settings.state_dir, st, self._digest(st),
                                        self._encoder)
            except OSError as e:
                log.error("cannot persist the applied state in %s: %s", self.settings.state_dir, e)

    async def flush_persisted(self) -> None:
        """Wait until the last applied state is on disk (shutdown, tests)."""
        while self._persist_task is not None and not self._persist_task.done():
            await asyncio.shield(self._persist_task)

    def _succeeded(self, state: NodeState) -> None:
        self._desired = state
        self._pending = None
        self._backoff = self.settings.retry_min
        self.stats["last_error"] = ""

    def _failed(self, state: NodeState, error: str, stdin: str, writes: int, t0: float) -> ApplyResult:
        self._believed = None  # the kernel may be half-way: re-read before the next try
        self._pending = state
        self.stats["apply_failures"] += 1
        self.stats["last_error"] = error
        self.stats["last_failed_input"] = stdin[:20000]
        log.error("apply failed (previous state stays in force, retry in %.1fs): %s", self._backoff, error)
        return ApplyResult(False, error, stdin, time.perf_counter() - t0, writes,
                           count(state), self.applied_digest)

    async def _ipset(self, lines: list[str]) -> int:
        if not lines:
            return 0
        text = "\n".join(lines) + "\n"
        res = await self.kernel.run(["ipset", "restore", "-exist"], text, timeout=self.settings.command_timeout)
        if not res.ok:
            raise ApplyError(res, text)
        return 1

    async def _iptables(self, fam: Family, w: FamilyWrite) -> int:
        if w.is_empty():
            return 0
        text = iptables_restore_text(w)
        if self._iptc is not None:
            res = await self._iptc.write(fam, w, text)
        else:
            res = await self.kernel.run(self.tools.restore_argv(fam), text, timeout=self.settings.command_timeout)
        if not res.ok:
            raise ApplyError(res, text)
        return 1

    async def _execute(self, state: NodeState, plan: planmod.Plan) -> int:
        n = await self._ipset(planmod.ipset_phase1(state, plan))
        for fam in FAMILIES:
            n += await self._iptables(fam, plan.writes[fam])
        if plan.switch:
            n += await self._ipset(planmod.ipset_phase3(state, plan))
            for fam in FAMILIES:
                if fam in plan.writes_back:
                    n += await self._iptables(fam, plan.writes_back[fam])
        n += await self._ipset(planmod.ipset_phase5(plan))
        return n

    # -------------------------------------------------------------- periodic
    async def _wait(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        waiter = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waiter.cancel()

    async def run_periodic_reconcile(self) -> None:
        """Forever: reconcile every period, ``settle`` seconds after each
        change, and retry a failed apply with exponential backoff."""
        while True:
            if self._pending is not None:
                await self.clock.sleep(self._backoff)
                self._backoff = min(self._backoff * 2, self.settings.retry_max)
            elif self._changed.is_set():
                self._changed.clear()
                await self.clock.sleep(self.settings.settle)
            else:
                await self._wait(self.settings.reconcile_period)
                if self._changed.is_set():
                    continue
            try:
                await self.reconcile()
            except Exception:  # a bug must not stop enforcement repair; it is logged loudly
                log.exception("reconcile crashed")

    def close(self) -> None:
        """Release the python-iptables worker thread, if any.  Touches no rule."""
        if self._iptc is not None:
            self._iptc.close()

    # ---------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "backend_reason": self.backend_reason,
            "checks": [vars_check(c) for c in self.checks],
            "applied_digest": self.applied_digest,
            "pending_digest": self._digest(self._pending) if self._pending is not None else "",
            "counts": count(self._desired) if self._desired is not None else {},
            **self.stats,
        }

    async def read_counters(self) -> dict[str, Any]:
        """Per-rule packet/byte counters of our chains (by tag) and member
        counters of our sets that have them (drops per pod)."""
        out: dict[str, Any] = {"rules": {}, "sets": {}}
        for fam in FAMILIES:
            if self._iptc is not None and self.settings.iptc_counters:
                out["rules"][fam] = await self._iptc.read_counters(fam)
                continue
            res = await self.kernel.run(self.tools.save_argv(fam, counters=True), timeout=self.settings.command_timeout)
            if not res.ok:
                raise ParseError(res.describe())
            kf = parse_iptables_save(res.stdout)
            out["rules"][fam] = {c: [(r.tag, r.packets, r.bytes) for r in rs] for c, rs in kf.chains.items()}
        want = [n for n, s in (self._desired.sets.items() if self._desired else ()) if s.counters]
        for name in want:
            res = await self.kernel.run(["ipset", "save", name], timeout=self.settings.command_timeout)
            if res.ok:
                ks = parse_ipset_save(res.stdout).get(name)
                if ks is not None:
                    out["sets"][name] = dict(ks.counters)
        return out


def vars_check(c: hostcheck.Check) -> dict[str, Any]:
    return {"name": c.name, "ok": c.ok, "detail": c.detail}


async def cleanup(kernel: Kernel, flavours: tuple[str, ...] = ("nft", "legacy"), timeout: float = 30.0) -> dict[str, Any]:
    """Remove everything the agent owns: hooks, STOCKADE-* chains (both
    flavours, IPv4 and IPv6), then stk* sets.  Nothing else is touched.
    Returns a summary; ``errors`` lists what could not be removed."""
    summary: dict[str, Any] = {"chains": 0, "hooks": 0, "sets": 0, "errors": []}
    for flavour in flavours:
        tools = Tools("nft" if flavour == "nft" else "legacy")
        for fam in FAMILIES:
            res = await kernel.run(tools.save_argv(fam), timeout=timeout)
            if not res.ok:
                continue  # flavour not available on this host
            kf = parse_iptables_save(res.stdout)
            hooks = tuple(h.line for hs in kf.hooks.values() for h in hs)
            w = FamilyWrite({}, tuple(sorted(kf.chains)), hooks)
            if w.is_empty():
                continue
            text = iptables_restore_text(w)
            r = await kernel.run(tools.restore_argv(fam), text, timeout=timeout)
            if r.ok:
                summary["chains"] += len(kf.chains)
                summary["hooks"] += len(hooks)
            else:
                summary["errors"].append(r.describe())
    res = await kernel.run(["ipset", "save"], timeout=timeout)
    if res.ok:
        names = sorted(parse_ipset_save(res.stdout))
        if names:
            r = await kernel.run(["ipset", "restore"], "".join(f"destroy {n}\n" for n in names), timeout=timeout)
            if r.ok:
                summary["sets"] = len(names)
            else:
                summary["errors"].append(r.describe())
    else:
        summary["errors"].append(res.describe())
    return summary
