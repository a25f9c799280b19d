"""The fuzz targets: what is driven, and the property every input must keep.

Each :class:`Target` pairs a hypothesis strategy with a ``check`` that
raises ``AssertionError`` (or lets an unexpected exception through) when
the property breaks.  ``tests/fuzz/test_fuzz.py`` runs each with a small
fixed, derandomized budget (CI); ``benchmarks/fuzz_run.py`` runs each for
a time budget and reports executions, crashes and the slowest input.

Properties:

* ``parse-tree`` / ``parse-mutate`` (``controller.parse``): the only
  exceptions are :class:`PolicyInvalid` (every error ``path: message``, at
  most MAX_ERRORS + 1 of them, each short) and :class:`ParseError` (a
  non-empty ``field``, a short message); each call finishes within
  ALLOWED_SECONDS; a valid policy parses to equal records twice, and every
  input gets the same outcome with the parser's caches cold or warm.
* ``case-bytes`` / ``case-mutate`` (``stockade.cases`` and ``stockade
  evaluate``): only :class:`CaseError` naming the file; the CLI returns 2
  exactly when the file is unusable, naming file and field on stderr, never
  raises, and its oracle and compiled path never disagree or fail.
* ``agent-bytes`` / ``agent-garbage`` (``stockade.wire.codec.Assembler`` ->
  ``nodeagent.client.AgentClient.handle`` -> ``nodeagent.dataplane.Dataplane``
  on ``nodeagent.fake_kernel.FakeKernel``): nothing raises; a refused update
  is acked with a short error, and the client's state *and the kernel* stay
  exactly as they were; an accepted one passes ``stockade.state_validation.validate``
  and is what the kernel holds; afterwards a valid snapshot is still
  accepted and applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import io
import json
import logging
import math
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from hypothesis import strategies as st

from controller import evaluate_cli, parse_objects, parse_selectors
from controller import parse as parse_mod
from controller.parse import ParseError, PolicyInvalid, parse_namespace, parse_node, parse_pod, parse_policy
from nodeagent import plan as planmod
from nodeagent.client import AgentClient, ClientSettings
from nodeagent.dataplane import Dataplane, DataplaneSettings, read_view
from nodeagent.fake_kernel import FakeKernel
from stockade import cases
from stockade.state import StateError, apply_delta, digest
from stockade.state_validation import validate
from stockade.v1 import stockade_pb2 as pb
from stockade.wire import codec
from stockade.wire.messages import Ack, Delta, InSync, Snapshot
from tests.fuzz import gen, wire_gen
from tests.spec.strategies import policy_json

ALLOWED_SECONDS = 2.0  # one input, asserted (the slowest seen is reported by fuzz_run)
HANG_SECONDS = 30.0  # a call still running after this is interrupted and reported as a hang
MAX_MESSAGE = 1200  # one error line (a path and a message)


class Hang(Exception):
    """A call ran past HANG_SECONDS."""


@contextlib.contextmanager
def bounded(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Interrupt the block with :class:`Hang` after ``seconds`` (SIGALRM;
    only in the main thread, elsewhere the time is only measured)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds}s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Target:
    """``check(example)`` raises when the property breaks; ``slowest`` is the
    longest single call seen (seconds), ``runs`` the calls made."""

    name: str
    driven: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]
    ci_examples: int
    slowest: float = 0.0
    runs: int = 0
    _t: float = field(default=0.0, repr=False)

    def run(self, example: Any) -> None:
        t0 = time.perf_counter()
        try:
            with bounded():
                self.check(example)
        finally:
            took = time.perf_counter() - t0
            self.runs += 1
            self.slowest = max(self.slowest, took)
        assert took < ALLOWED_SECONDS, f"{self.name}: one input took {took:.2f}s (bound {ALLOWED_SECONDS}s)"


# --------------------------------------------------------------------------
# controller.parse


def _clear_parse_caches() -> None:
    """Interning dicts and every ``lru_cache`` of ``controller.parse`` and
    of its parts (``controller.parse_*``, all imported by it) emptied."""
    parse_selectors._SELECTORS.clear()
    parse_objects._LABELS.clear()
    for name, mod in list(sys.modules.items()):
        if name != "controller.parse" and not name.startswith("controller.parse_"):
            continue
        for v in vars(mod).values():
            if callable(getattr(v, "cache_clear", None)):
                v.cache_clear()


def _check_policy_invalid(e: PolicyInvalid) -> None:
    assert e.errors, "PolicyInvalid without errors"
    assert len(e.errors) <= parse_mod.MAX_ERRORS + 1, f"{len(e.errors)} errors listed"
    for err in e.errors:
        path, sep, msg = err.partition(": ")
        assert sep and path and msg, f"error without a field path: {err[:200]!r}"
        assert len(err) <= MAX_MESSAGE, f"error of {len(err)} characters: {err[:200]!r}..."
    assert len(str(e)) <= (parse_mod.MAX_ERRORS + 1) * (MAX_MESSAGE + 2) + 300


def _check_parse_error(e: ParseError) -> None:
    assert e.field, f"ParseError without a field: {e}"
    assert len(str(e)) <= MAX_MESSAGE, f"ParseError of {len(str(e))} characters: {str(e)[:200]!r}..."


PARSERS: dict[str, Callable[[Any], Any]] = {
    "policy": parse_policy, "pod": parse_pod, "namespace": parse_namespace, "node": parse_node}


def outcome(kind: str, obj: Any) -> tuple[str, Any]:
    """("ok", record) or ("invalid", errors); any other exception escapes."""
    try:
        return "ok", PARSERS[kind](obj)
    except PolicyInvalid as e:
        assert kind == "policy", f"PolicyInvalid from parse_{kind}"
        _check_policy_invalid(e)
        return "invalid", tuple(e.errors)
    except ParseError as e:
        assert kind != "policy", "ParseError from parse_policy"
        _check_parse_error(e)
        return "invalid", (str(e),)


def _same(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    # NaN != NaN: compare the text of error lists, the records themselves otherwise
    return a == b or repr(a) == repr(b)


def check_parse_tree(example: tuple[str, Any]) -> None:
    kind, obj = example
    first = outcome(kind, obj)
    _clear_parse_caches()
    again = outcome(kind, copy.deepcopy(obj) if gen.depth_ok(obj) else obj)
    assert _same(first, again), f"outcome depends on the parser's caches: {first!r:.300} vs {again!r:.300}"


def check_parse_mutate(example: tuple[str, Any, Any]) -> None:
    kind, base, broken = example
    good = outcome(kind, base)
    assert good[0] == "ok", f"the unmutated {kind} is invalid: {good[1]!r:.500}"
    assert _same(good, outcome(kind, copy.deepcopy(base))), "a valid object parses to different records"
    warm = outcome(kind, broken)  # caches warmed by the valid original
    _clear_parse_caches()
    cold = outcome(kind, copy.deepcopy(broken) if gen.depth_ok(broken) else broken)
    assert _same(warm, cold), f"outcome depends on the parser's caches: warm {warm!r:.300} vs cold {cold!r:.300}"


def _shaped(t: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A policy skeleton with a drawn tree in every slot."""
    return st.fixed_dictionaries({
        "apiVersion": st.one_of(st.just("networking.k8s.io/v1"), t), "kind": st.just("NetworkPolicy"),
        "metadata": st.fixed_dictionaries({"name": st.one_of(st.just("p"), t), "namespace": st.one_of(st.just("x"), t),
                                           "labels": t}),
        "spec": st.fixed_dictionaries({
            "podSelector": t, "policyTypes": t,
            "ingress": st.lists(st.fixed_dictionaries({
                "from": st.lists(st.one_of(t, st.fixed_dictionaries({"ipBlock": t}),
                                           st.fixed_dictionaries({"podSelector": t, "namespaceSelector": t})),
                                 max_size=3),
                "ports": st.lists(t, max_size=2)}), max_size=2),
            "egress": t}),
    })


def _pods() -> st.SearchStrategy[dict[str, Any]]:
    decl = st.builds(cases.PodDecl, st.sampled_from(("x", "y")), st.sampled_from(("a", "b")),
                     st.dictionaries(st.sampled_from(("app", "k8s.io/role")), st.sampled_from(("web", ""))),
                     st.lists(st.builds(cases.PortDecl, st.integers(1, 65535), st.sampled_from(cases.PROTOCOLS),
                                        st.sampled_from(("", "http"))), max_size=2, unique_by=lambda p: p.name or p.port)
                     .map(tuple),
                     st.none(), st.booleans())
    return st.builds(cases.pod_object, decl, st.sampled_from(("198.18.0.2", "fd00::5")), st.integers(0, 3))


BASES: dict[str, st.SearchStrategy[Any]] = {
    "policy": st.one_of(policy_json("ns-a", "p1"), st.sampled_from(
        [p for d in gen.recipe_docs() for p in d.get("policies", []) if "{{" not in json.dumps(p)])),
    "pod": _pods(),
    "namespace": st.builds(cases.namespace_object, st.sampled_from(("x", "kube-system")),
                           st.dictionaries(st.sampled_from(("team", "kubernetes.io/metadata.name")),
                                           st.sampled_from(("ops", "x")))),
    "node": st.builds(cases.node_object, st.integers(0, 199)),
}


# --------------------------------------------------------------------------
# stockade.cases and stockade evaluate

_TMP = Path(tempfile.mkdtemp(prefix="stockade-fuzz-"))


def _run_cli(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = evaluate_cli.main([str(path)])
    return rc, out.getvalue(), err.getvalue()


def check_case_file(data: bytes) -> None:
    path = _TMP / "case.json"
    path.write_bytes(data)
    loaded = cases.load_each([path])
    assert len(loaded) == 1
    item = loaded[0]
    if isinstance(item, cases.CaseError):
        assert item.file == str(path), item.file
        assert str(item).startswith(f"{path}: "), str(item)[:300]
        assert len(str(item)) <= len(str(path)) + 6 * cases.MAX_FIELD_TEXT, f"CaseError of {len(str(item))} chars"
        assert "Traceback" not in item.message
    rc, out, err = _run_cli(path)
    assert "Traceback" not in err, err[-2000:]
    if isinstance(item, cases.CaseError):
        assert rc == 2, f"unusable file, exit {rc}"
        assert str(path) in err and (item.field or "<file>") in err, err[:500]
        return
    assert rc in (0, 1), f"usable file, exit {rc}: {err[:500]}"
    doc = json.loads(out)
    assert doc["mode"] == "evaluate" and len(doc["cases"]) == 1
    assert "DISAGREEMENT" not in err, err[:3000]
    assert "compiled path failed" not in err, err[:3000]


def dump_json(doc: Any) -> bytes:
    """``doc`` as JSON text without recursion (deep nesting, huge ints, NaN)."""
    out: list[str] = []
    todo: list[Any] = [doc]
    close = object()
    while todo:
        v = todo.pop()
        if isinstance(v, tuple) and len(v) == 2 and v[0] is close:
            out.append(v[1])
        elif isinstance(v, dict):
            out.append("{")
            todo.append((close, "}"))
            items = list(v.items())
            for i, (k, x) in reversed(list(enumerate(items))):
                todo.append(x)
                todo.append((close, ("," if i else "") + json.dumps(str(k)) + ":"))
        elif isinstance(v, list):
            out.append("[")
            todo.append((close, "]"))
            for i, x in reversed(list(enumerate(v))):
                todo.append(x)
                if i:
                    todo.append((close, ","))
        elif isinstance(v, bool) or v is None:
            out.append(json.dumps(v))
        elif isinstance(v, int):
            out.append(repr(v) if v.bit_length() < 10_000 else "9" * 5000)
        elif isinstance(v, float):
            out.append(json.dumps(v) if math.isfinite(v) else ("NaN" if math.isnan(v) else "Infinity"))
        else:
            out.append(json.dumps(v))
    return "".join(out).encode("utf-8", "surrogatepass")


def check_case_doc(doc: Any) -> None:
    check_case_file(dump_json(doc))


# --------------------------------------------------------------------------
# the agent: codec -> client -> dataplane -> fake kernel

GOOD = wire_gen.good_state()
GOOD_DIGEST = digest(GOOD)
RECOVERY = wire_gen.good_state(pods=5)  # what a controller sends after the garbage


def _kernel_snapshot(k: FakeKernel) -> Any:
    return copy.deepcopy((k.sets, k.tables))


class _Agent:
    """A real AgentClient over a real Dataplane on an in-memory kernel,
    already enforcing GOOD at version 1."""

    def __init__(self) -> None:
        self.kernel = FakeKernel()
        self.dp = Dataplane(self.kernel, DataplaneSettings(backend="nft", state_dir=str(_TMP / "state"),
                                                           cut_conntrack=False, settle=3600))
        self.client = AgentClient(ClientSettings(wire_gen.NODE, ["127.0.0.1:1"]), self.dp)

    async def start(self) -> None:
        await self.dp.start()
        ack = await self.client.handle(Snapshot(GOOD, 1, GOOD_DIGEST))
        assert ack.ok, ack.error

    async def offer(self, u: Any) -> Ack:
        """Hand one update to the client; check the ack against the kernel."""
        before_state, before_version = self.client.state, self.client.version
        before_kernel = _kernel_snapshot(self.kernel)
        ack = await self.client.handle(u)
        await self.dp.flush_persisted()
        assert isinstance(ack, Ack)
        if not ack.ok:
            assert ack.error, "a refused update acked without an error"
            assert len(ack.error) <= 4 * MAX_MESSAGE, f"ack error of {len(ack.error)} characters: {ack.error[:300]!r}"
            assert self.client.state is before_state and self.client.version == before_version, "state not kept"
            assert _kernel_snapshot(self.kernel) == before_kernel, \
                f"refused update changed the kernel: {ack.error[:400]}"
            return ack
        st_ = self.client.state
        assert st_ is not None
        validate(st_)  # the contract's own strict check (raises StateError)
        view = await read_view(self.kernel, self.dp.tools)
        assert planmod.make_plan(st_, view).is_empty(), "kernel does not hold the accepted state"
        return ack


def _fix(u: Any, client: AgentClient) -> Any:
    """The update as a controller that computed the digest of this content would send it."""
    if isinstance(u, Snapshot):
        return dataclasses.replace(u, digest=digest(u.state))
    if isinstance(u, Delta) and client.state is not None:
        try:
            return dataclasses.replace(u, digest=digest(apply_delta(client.state, u.delta)))
        except StateError:
            return u
    return u


def _placeholders(m: pb.ControllerMessage) -> pb.ControllerMessage:
    m = copy.deepcopy(m)
    which = m.WhichOneof("kind")
    if which == "delta_complete" and m.delta_complete.base_digest == "GOOD":
        m.delta_complete.base_digest = GOOD_DIGEST
    if which == "in_sync" and m.in_sync.digest == "GOOD":
        m.in_sync.digest = GOOD_DIGEST
    return m


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """The agent logs every refused update at ERROR: thousands of them per run."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)


async def _drive(messages: list[bytes] | list[pb.ControllerMessage], fix_digest: bool) -> None:
    with _quiet("stockade.agent", "nodeagent", "stockade"):
        await _drive_quiet(messages, fix_digest)


async def _drive_quiet(messages: list[bytes] | list[pb.ControllerMessage], fix_digest: bool) -> None:
    a = _Agent()
    await a.start()
    asm = codec.Assembler()
    for raw in messages:
        if isinstance(raw, bytes):
            try:
                msg = pb.ControllerMessage.FromString(raw)
            except DecodeError:  # grpc fails the stream; the client reconnects with a fresh assembler
                asm = codec.Assembler()
                continue
        else:
            msg = _placeholders(raw)
        u = asm.feed(msg)
        if u is None:
            continue
        if fix_digest and not isinstance(u, InSync):
            u = _fix(u, a.client)
        await a.offer(u)
    # whatever came before, the agent still takes a good state (a fresh stream, a fresh snapshot)
    ack = await a.offer(Snapshot(RECOVERY, a.client.version + 1, digest(RECOVERY)))
    assert ack.ok, f"a valid snapshot after the garbage was refused: {ack.error[:400]}"


def check_agent_bytes(data: list[bytes]) -> None:
    asyncio.run(_drive(data, fix_digest=False))


def check_agent_garbage(stream: wire_gen.Stream) -> None:
    asyncio.run(_drive(list(stream.messages), stream.fix_digest))


# --------------------------------------------------------------------------

TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("parse-tree", "parse_policy/parse_pod/parse_namespace/parse_node on arbitrary JSON-like trees "
                         "(and policy skeletons with a tree in every slot)",
           st.tuples(st.sampled_from(sorted(PARSERS)), gen.trees()) |
           st.tuples(st.just("policy"), _shaped(gen.trees(6))),
           check_parse_tree, ci_examples=150),
    Target("parse-mutate", "valid policies (tests/spec strategies, recipes), pods, namespaces and nodes "
                           "broken at 1-3 drawn paths",
           st.sampled_from(sorted(BASES)).flatmap(
               lambda k: gen.mutated(BASES[k]).map(lambda bm: (k, bm[0], bm[1]))),
           check_parse_mutate, ci_examples=300),
    Target("case-bytes", "stockade.cases.load and `stockade evaluate` on a file of arbitrary bytes or a "
                         "recipe's bytes truncated / spliced / with invalid UTF-8",
           gen.byte_mutations(), check_case_file, ci_examples=120),
    Target("case-mutate", "stockade.cases.load and `stockade evaluate` on recipe and spec cases broken "
                          "at 1-3 drawn paths",
           gen.mutated(st.sampled_from(gen.recipe_docs())).map(lambda bm: bm[1]),
           check_case_doc, ci_examples=120),
    Target("agent-bytes", "random bytes as serialized ControllerMessages -> Assembler -> AgentClient.handle "
                          "-> Dataplane on FakeKernel",
           wire_gen.raw_streams(), check_agent_bytes, ci_examples=150),
    Target("agent-garbage", "structurally valid snapshot/delta streams with garbage fields -> Assembler -> "
                            "AgentClient.handle -> Dataplane on FakeKernel",
           wire_gen.garbage_streams(), check_agent_garbage, ci_examples=100),
)}
