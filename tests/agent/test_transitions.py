"""Random transitions between small states (hypothesis): after every step
the kernel makes visible (each ipset line, each COMMIT) it allows nothing that neither the old nor the new
state allows, the result equals a direct apply of the new state, and a
reconcile afterwards writes nothing."""

from __future__ import annotations

import asyncio
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeagent.dataplane import Dataplane, DataplaneSettings
from nodeagent.fake_kernel import FakeKernel
from stockade.state import Chain, FamilyState, Hook, IPSet, NodeState, Rule, SetMatch

from .walker import Packet, allowed

PODS = [f"198.18.0.{i}" for i in range(2, 8)]
MARK = 0x10000


Spec = list[tuple[str, str, int]]  # per policy: (selected set, peer set, tcp port)


def build(spec: Spec, members: dict[str, frozenset[str]]) -> NodeState:
    sets: dict[str, IPSet] = {}
    fwd: list[Rule] = [Rule("RETURN", ctstate=("RELATED", "ESTABLISHED"))]
    drops: list[Rule] = []
    chains: dict[str, Chain] = {}
    for i, (sel, peer, port) in enumerate(spec):
        for name in (sel, peer):
            sets[name] = IPSet(name, "hash:ip", "inet", members.get(name, frozenset()))
        name = f"STOCKADE-P{i}"
        chains[name] = Chain(name, (Rule("MARK", proto="tcp", dport=(port, port), sets=(SetMatch(peer, ("src",)),),
                                         set_mark=(MARK, MARK)),))
        fwd.append(Rule("JUMP", target=name, sets=(SetMatch(sel, ("dst",)),)))
        drops.append(Rule("DROP", sets=(SetMatch(sel, ("dst",)),), mark=(MARK, MARK, True)))
    chains["STOCKADE-FORWARD"] = Chain("STOCKADE-FORWARD", (*fwd, *drops))
    return NodeState("n1", sets, FamilyState(chains, (Hook("FORWARD", "STOCKADE-FORWARD"),)))


SET_NAMES = [f"stksel{i}" for i in range(3)] + [f"stkpeer{i}" for i in range(3)]
specs = st.lists(st.tuples(st.sampled_from(SET_NAMES[:3]), st.sampled_from(SET_NAMES[3:]), st.sampled_from([80, 8080])),
                 min_size=1, max_size=3)
memberships = st.fixed_dictionaries({n: st.frozensets(st.sampled_from(PODS), max_size=3) for n in SET_NAMES})


@st.composite
def transitions(draw: st.DrawFn) -> tuple[NodeState, NodeState]:
    """Old and new state: same rules with new members (pods moving between
    sets), or new rules too."""
    spec, before, after = draw(specs), draw(memberships), draw(memberships)
    new_spec = spec if draw(st.booleans()) else draw(specs)
    return build(spec, before), build(new_spec, after)


PROBES = [Packet(s, d, "tcp", p) for s in PODS for d in PODS if s != d for p in (80, 8080)]


async def _run(old: NodeState, new: NodeState) -> None:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        k = FakeKernel()
        dp = Dataplane(k, DataplaneSettings(backend="nft", state_dir=a, cut_conntrack=False))
        await dp.start()
        assert (await dp.apply(old)).ok
        before = {p: allowed(k, p) for p in PROBES}
        ref = FakeKernel()
        rdp = Dataplane(ref, DataplaneSettings(backend="nft", state_dir=b, cut_conntrack=False))
        await rdp.start()
        assert (await rdp.apply(new)).ok
        after = {p: allowed(ref, p) for p in PROBES}
        snaps: list[dict[Packet, bool]] = []
        k.observer = lambda: snaps.append({p: allowed(k, p) for p in PROBES})
        res = await dp.apply(new)
        assert res.ok, res.error
        for i, snap in enumerate(snaps):
            looser = [p for p in PROBES if snap[p] and not (before[p] or after[p])]
            assert not looser, f"step {i}: allowed by neither state: {looser}"
        assert {p: allowed(k, p) for p in PROBES} == after
        assert {n: (s.type, set(s.members)) for n, s in k.sets.items()} == \
               {n: (s.type, set(s.members)) for n, s in ref.sets.items()}
        assert k.table().chains == ref.table().chains
        k.observer = None
        assert (await dp.reconcile()).writes == 0
        await dp.flush_persisted()
        await rdp.flush_persisted()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transitions())
def test_random_transitions_are_safe_and_path_independent(t: tuple[NodeState, NodeState]) -> None:
    asyncio.run(_run(*t))
