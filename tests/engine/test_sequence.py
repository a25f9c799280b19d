"""State-sequence tests: the result depends only on the final cluster.

The same final cluster is reached through shuffled, duplicated and split
update orders, with detours (objects that are changed and changed back,
created and deleted, policies invalid for a while), flushing at random
points.  Every node's final state must be digest-identical to a fresh
engine fed only the final cluster, and what ``flush`` reported must add up
to that state.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from controller.engine import Engine
from controller.model import ContainerPort, Namespace, NetworkPolicy, Node, Pod
from stockade.state import NodeState, digest
from stockade.state_validation import validate
from tests.engine.builders import block, node, ns, peer, pod, policy, port, rule, sel

Obj = Namespace | Pod | Node | NetworkPolicy
Step = Callable[[Engine], None]


def final_cluster() -> list[Obj]:
    http = (ContainerPort(8080, "TCP", "http"),)
    return [
        ns("a", env="prod"), ns("b", env="dev"), ns("c"),
        node("n1", "192.168.0.1"), node("n2", "192.168.0.2"), node("n4"),
        pod("a/web-1", "n1", "10.0.1.1", http, app="web"),
        pod("a/web-2", "n2", ("10.0.2.1", "fd00::2:1"), (ContainerPort(9090, "TCP", "http"),), app="web"),
        pod("a/db", "n2", "10.0.2.2", (ContainerPort(5432, "TCP", "pg"),), app="db"),
        pod("b/cli", "n1", "10.0.1.2", app="cli"),
        pod("b/cli-2", "n3", "10.0.3.2", app="cli"),
        pod("c/job", "n3", "10.0.3.3", phase="Succeeded", app="cli"),
        pod("c/agent", "n3", "192.168.0.3", host_network=True, app="agent"),
        policy("a/deny", ingress=(), egress=()),
        policy("a/web", sel({"app": "web"}), ingress=(rule(peer(None, sel({"env": "dev"}))),
                                                      rule(ports=(port("http"),)))),
        policy("a/db", sel({"app": "db"}), ingress=(rule(peer(sel({"app": "web"})), ports=(port("pg"),)),),
               egress=(rule(block("10.0.0.0/16", "10.0.1.0/24"), ports=(port(53, "UDP"),)),)),
        policy("a/web-out", sel({"app": "web"}), egress=(rule(peer(sel({"app": "db"}))),)),
        policy("b/in", sel({"app": "cli"}), ingress=(rule(peer(sel({"app": "cli"}))),)),  # b/out's targets too
        policy("b/out", sel({"app": "cli"}), egress=(rule(peer(sel({"app": "web"}), sel())),
                                                    rule(block("fd00::/64")))),
    ]


def set_step(o: Obj) -> Step:
    if isinstance(o, Namespace):
        return lambda e: e.set_namespace(o)
    if isinstance(o, Pod):
        return lambda e: e.set_pod(o)
    if isinstance(o, Node):
        return lambda e: e.set_node(o)
    return lambda e: e.set_policy(o)


def remove_step(o: Obj) -> Step:
    if isinstance(o, Namespace):
        return lambda e: e.remove_namespace(o.name)
    if isinstance(o, Pod):
        return lambda e: e.remove_pod(o.key)
    if isinstance(o, Node):
        return lambda e: e.remove_node(o.name)
    return lambda e: e.remove_policy(o.key)


def detours(o: Obj, rnd: random.Random) -> list[Step]:
    """Steps on the way to ``o`` (the last one sets ``o``)."""
    steps: list[Step] = []
    kind = rnd.randrange(6)
    if kind == 1 and isinstance(o, Pod):
        steps.append(set_step(pod(o.key, rnd.choice(["n1", "n2", "n9"]), rnd.choice(["10.0.9.9", "fd00::9"]),
                                  app=rnd.choice(["web", "db", "x"]))))
    elif kind == 1 and isinstance(o, Namespace):
        steps.append(set_step(ns(o.name, env=rnd.choice(["prod", "dev"]))))
    elif kind == 1 and isinstance(o, NetworkPolicy):
        steps.append(lambda e: e.set_invalid_policy(o.key, ["spec.ingress[0].ports[0].port: bad"]))
    elif kind == 2 and isinstance(o, NetworkPolicy):
        steps.append(set_step(policy(o.key, sel({"app": "web"}), ingress=(rule(peer(sel())),))))
    elif kind == 3:
        steps.append(set_step(o))
        steps.append(remove_step(o))
    steps.append(set_step(o))
    if kind == 4:
        steps.append(set_step(o))  # duplicate
    return steps


def extra_objects() -> list[Obj]:
    """Objects that appear and go away again."""
    return [pod("a/tmp", "n5", ("10.0.5.5", "fd00::5"), app="web"), ns("zz", env="dev"),
            policy("b/tmp", sel(), ingress=(rule(block("0.0.0.0/0", "10.0.0.0/8")),)), node("n6")]


def fresh_states(objs: list[Obj]) -> dict[str, str]:
    e = Engine()
    for o in objs:
        set_step(o)(e)
    return {n: digest(e.node_state(n)) for n in e.nodes()}


def interleave(seqs: list[list[Step]], rnd: random.Random) -> list[Step]:
    out: list[Step] = []
    seqs = [list(s) for s in seqs if s]
    while seqs:
        s = rnd.choice(seqs)
        out.append(s.pop(0))
        if not s:
            seqs.remove(s)
    return out


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed{s}") for s in range(40)])
def test_final_state_depends_only_on_final_cluster(seed: int) -> None:
    rnd = random.Random(seed)
    objs = final_cluster()
    want = fresh_states(objs)
    seqs = [detours(o, rnd) for o in objs]
    seqs += [[set_step(o), remove_step(o)] for o in extra_objects() if rnd.random() < 0.7]
    e = Engine()
    seen: dict[str, NodeState] = {}
    for step in interleave(seqs, rnd):
        step(e)
        r = rnd.random()
        if r < 0.15:
            for n, st in e.flush().items():
                validate(st)
                seen[n] = st
        elif r < 0.25:  # a reader between flushes (status page, explain)
            validate(e.node_state(rnd.choice(["n1", "n2", "n3", "n5", "n9"])))
    for n, st in e.flush().items():
        validate(st)
        seen[n] = st
    assert e.nodes() == sorted(want)
    assert {n: digest(e.node_state(n)) for n in e.nodes()} == want
    assert {n: digest(seen[n]) for n in want} == want
    assert e.flush() == {}


def test_noop_updates_report_nothing_and_keep_objects() -> None:
    objs = final_cluster()
    e = Engine()
    for o in objs:
        set_step(o)(e)
    first = e.flush()
    assert sorted(first) == e.nodes()
    for o in objs:  # the same objects again, and a change that is reverted
        set_step(o)(e)
    e.set_pod(pod("a/db", "n2", "10.0.2.2", app="other"))
    e.set_pod(next(o for o in objs if isinstance(o, Pod) and o.key == "a/db"))
    e.set_namespace(ns("b", env="prod"))
    e.set_namespace(ns("b", env="dev"))
    assert e.flush() == {}
    assert all(e.node_state(n) is first[n] for n in first)


def test_one_change_reports_exactly_the_nodes_it_touches() -> None:
    e = Engine()
    for o in final_cluster():
        set_step(o)(e)
    before = e.flush()
    # a/db's egress uses only its own node; its peers: ingress from app=web
    e.set_pod(pod("a/web-1", "n1", "10.0.1.1", (ContainerPort(8080, "TCP", "http"),), app="web", tier="x"))
    assert e.flush() == {}  # label nobody selects on
    e.set_pod(pod("b/cli-2", "n3", "10.0.3.2", app="other"))
    changed = e.flush()
    # n3: b/cli-2 leaves b/out's and b/in's targets; n1: b/in (on b/cli) loses it as a peer
    assert sorted(changed) == ["n1", "n3"]
    for n, st in changed.items():
        assert st is not before[n]
