"""Protobuf conversions for the read-only debugging RPCs (ListNodes, GetNodeState, Explain, GetApplied).

Kept apart from ``stockade.wire.codec`` (the stream's codec) so each stays
small; like it, this is a codec module: the only other place that builds
``stockade.v1`` messages.  Inputs are the plain dicts the distributor,
the explain source and the agent service already produce.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from stockade.state import FAMILIES, NodeState
from stockade.v1 import stockade_pb2 as pb
from stockade.wire.codec import _FAMILY, _hooks_pb, _set_header, rule_to_pb


def node_status_to_pb(d: Mapping[str, Any]) -> pb.NodeStatus:
    """A ``Distributor.nodes_status()`` entry as a ``NodeStatus``."""
    return pb.NodeStatus(
        node=d["node"], connected=d["connected"], replica=d.get("replica") or "", peer=d.get("peer") or "",
        agent_version=d.get("agent_version") or "",
        desired_version=d["desired_version"], desired_digest=d["desired_digest"],
        applied_version=d["applied_version"], applied_digest=d["applied_digest"], in_sync=d["in_sync"],
        lag=d["lag"], last_apply_unix=d.get("last_apply_unix") or 0.0,
        last_apply_seconds=d.get("last_apply_seconds") or 0.0, last_error=d.get("last_error") or "",
        host_checks=[pb.HostCheck(name=c["name"], ok=c["ok"], detail=c.get("detail", ""))
                     for c in d.get("host_checks", ())],
        drift_repairs=d.get("drift_repairs", 0), counts=d.get("counts", {}))


def list_nodes_to_pb(statuses: list[dict[str, Any]]) -> pb.ListNodesResponse:
    return pb.ListNodesResponse(nodes=[node_status_to_pb(d) for d in statuses])


def node_state_to_pb(state: NodeState, version: int, digest: str) -> pb.GetNodeStateResponse:
    """The whole state in one message (debugging; no chunking)."""
    r = pb.GetNodeStateResponse(node=state.node, version=version, digest=digest)
    for name in sorted(state.sets):
        s = state.sets[name]
        m = r.sets.add()
        m.CopyFrom(_set_header(s))
        m.members.extend(sorted(s.members))
        m.nomatch.extend(sorted(s.nomatch))
    for fam in FAMILIES:
        fs = state.family(fam)
        for cname in sorted(fs.chains):
            r.chains.add(family=_FAMILY[fam], name=cname, rules=[rule_to_pb(x) for x in fs.chains[cname].rules])
        r.hooks.append(_hooks_pb(fam, fs.hooks))
    return r


def explain_to_pb(result: Mapping[str, Any]) -> pb.ExplainResponse:
    """An ``ExplainSource.explain`` result (a JSON-able dict) as an ``ExplainResponse``."""
    reasons = result.get("reasons") or result.get("policies") or []
    return pb.ExplainResponse(verdict=str(result.get("verdict", "")),
                              json=json.dumps(result, sort_keys=True, default=str),
                              reasons=[r if isinstance(r, str) else json.dumps(r, sort_keys=True, default=str)
                                       for r in reasons])


def applied_to_pb(d: Mapping[str, Any]) -> pb.GetAppliedResponse:
    return pb.GetAppliedResponse(
        node=d.get("node", ""), digest=d.get("digest", ""), version=d.get("version", 0),
        counts=d.get("counts", {}), status_json=json.dumps(d.get("dataplane", {}), sort_keys=True, default=str),
        connected=d.get("connected", False), controller=d.get("controller", ""),
        last_error=d.get("last_error", ""), last_apply_unix=d.get("last_apply_unix", 0.0))

