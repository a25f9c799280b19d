"""The controller's HTTP side (port 7701): status page, JSON API, metrics, health.

Routes:

* ``/``: a server-rendered page an operator reads at a glance (every node
  with its agent, replica, desired vs applied version, lag, last apply,
  drift repairs and last error; every policy with pods selected, nodes
  spanned and validation errors; watch health; cluster totals).  A little
  CSS, a meta refresh, no JavaScript.
* ``/api/v1/status``: the same data as JSON.
* ``/api/v1/nodes/{node}``: that node's desired state.
* ``/api/v1/policies/{ns}/{name}``: one policy (or its validation errors).
* ``/api/v1/explain?from=NS/POD&to=NS/POD&port=N&protocol=TCP``: the
  oracle's verdict and the policies and rules behind it.  Bad parameters
  get a 400 naming the parameter, unknown pods a 404, and any question
  before readiness a 503.
* ``/healthz`` (the process serves), ``/readyz`` (503 until every kind has
  been listed once), ``/metrics`` (Prometheus, default registry).

Everything is read through the :class:`StatusSource` protocol (implemented
by ``controller.runtime.Controller``); this module renders and validates
input, it never changes controller state.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import string
import time
from collections.abc import Mapping
from importlib import resources
from typing import Any, Protocol

from aiohttp import web

from controller import metrics
from stockade.state import FAMILIES, NodeState, Rule, count, digest

log = logging.getLogger("stockade.controller.http")

PROTOCOLS = ("TCP", "UDP", "SCTP")
REFRESH_SECONDS = 5


class ExplainError(KeyError):
    """A well-formed explain request naming something that does not exist
    (a KeyError so the gRPC Explain maps it to NOT_FOUND too)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class StatusSource(Protocol):
    def is_ready(self) -> bool: ...
    def status(self) -> dict[str, Any]: ...
    def node_state_json(self, node: str) -> dict[str, Any] | None: ...
    def policy(self, key: str) -> dict[str, Any] | None: ...
    def explain(self, src: str, dst: str, port: int, protocol: str) -> dict[str, Any]: ...


# --------------------------------------------------------------------------
# JSON of a NodeState (pure)


def _rule_json(r: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"action": r.action}
    for name in ("target", "proto", "in_iface", "out_iface", "limit", "comment", "nflog_prefix"):
        v = getattr(r, name)
        if v:
            out[name] = v
    if r.dport is not None:
        out["dport"] = list(r.dport)
    if r.sets:
        out["sets"] = [{"set": s.set, "dirs": list(s.dirs), "negate": s.negate} for s in r.sets]
    if r.ctstate:
        out["ctstate"] = list(r.ctstate)
    if r.mark is not None:
        out["mark"] = list(r.mark)
    if r.set_mark is not None:
        out["set_mark"] = list(r.set_mark)
    if r.physdev_is_bridged is not None:
        out["physdev_is_bridged"] = r.physdev_is_bridged
    if r.nflog_group:
        out["nflog_group"] = r.nflog_group
    return out


def node_state_json(state: NodeState, version: int | None = None) -> dict[str, Any]:
    """A NodeState as JSON (sorted, so equal states print equal)."""
    fams: dict[str, Any] = {}
    for fam in FAMILIES:
        fs = state.family(fam)
        fams[fam] = {
            "chains": {n: [_rule_json(r) for r in fs.chains[n].rules] for n in sorted(fs.chains)},
            "hooks": [{"builtin": h.builtin, "target": h.target, "position": h.position} for h in fs.hooks],
        }
    return {
        "node": state.node, "version": version, "digest": digest(state), "counts": count(state),
        "sets": {n: {"type": s.type, "family": s.family, "members": sorted(s.members),
                     "nomatch": sorted(s.nomatch), "counters": s.counters, "comment": s.comment}
                 for n, s in sorted(state.sets.items())},
        "families": fams,
    }


# --------------------------------------------------------------------------
# The page (pure: status dict -> HTML)


def _e(v: object) -> str:
    return html.escape("" if v is None else str(v))


def _ago(unix: object, now: float) -> str:
    if not isinstance(unix, int | float) or unix <= 0:
        return "never"
    d = max(0.0, now - float(unix))
    if d < 120:
        return f"{d:.0f}s ago"
    if d < 7200:
        return f"{d / 60:.0f}m ago"
    return f"{d / 3600:.1f}h ago"


def _badge(ok: bool, yes: str, no: str, warn: bool = False) -> str:
    cls = "ok" if ok else ("warn" if warn else "bad")
    return f'<span class="badge {cls}">{_e(yes if ok else no)}</span>'


@functools.cache
def _template() -> string.Template:
    return string.Template(resources.files("controller").joinpath("templates/status.html").read_text("utf-8"))


def render_page(st: Mapping[str, Any], now: float | None = None) -> str:
    """The status page for a :meth:`StatusSource.status` dict (all text escaped)."""
    now = time.time() if now is None else now
    tmpl = _template()
    totals = st.get("totals", {})
    tot_html = "".join(f"<div><b>{_e(v)}</b>{_e(k.replace('_', ' '))}</div>" for k, v in totals.items())
    node_rows = []
    for n in st.get("nodes", []):
        connected = bool(n.get("connected"))
        lag = n.get("lag")
        in_sync = bool(n.get("in_sync"))
        cls = "" if connected else ' class="down"'
        # Agents of other replicas do not show here: "not connected" means to this replica.
        agent = _badge(connected, "connected", "not connected to this replica")
        if connected:
            agent += " " + _badge(in_sync, "in sync", "behind", warn=True)
        if not n.get("in_cluster", True):
            agent += ' <span class="badge warn">not in cluster</span>'
        failing = [str(c.get("name", "?")) for c in n.get("host_checks") or [] if not c.get("ok", True)]
        if failing:
            agent += f' <span class="badge warn" title="host checks failing">check: {_e(", ".join(failing))}</span>'
        err = n.get("last_error") or ""
        node_rows.append(
            f'<tr{cls} data-node="{_e(n.get("node"))}"><td><a href="/api/v1/nodes/{_e(n.get("node"))}">'
            f'{_e(n.get("node"))}</a></td><td>{agent}</td><td>{_e(n.get("replica") or "-")}</td>'
            f'<td>{_e(n.get("desired_version", "-"))}</td><td>{_e(n.get("applied_version", "-"))}</td>'
            f'<td>{_e(lag if lag is not None else "-")}</td>'
            f'<td>{_ago(n.get("last_apply_unix"), now)}'
            f'{" (" + format(float(n["last_apply_seconds"]) * 1000, ".1f") + " ms)" if n.get("last_apply_seconds") else ""}</td>'
            f'<td>{_e(n.get("drift_repairs", 0))}</td><td class="err">{_e(err)}</td></tr>')
    if not node_rows:
        node_rows.append('<tr><td colspan="9" class="muted">no nodes yet</td></tr>')
    pol_rows = []
    for p in st.get("policies", []):
        valid = bool(p.get("valid", True))
        errs = p.get("errors") or []
        cls = "" if valid else ' class="invalid"'
        key = str(p.get("key", ""))
        pol_rows.append(
            f'<tr{cls} data-policy="{_e(key)}"><td><a href="/api/v1/policies/{_e(key)}">{_e(key)}</a></td>'
            f'<td>{_badge(valid, "enforced", "INVALID: not enforced")}</td>'
            f'<td>{_e(p.get("pods_selected", "-")) if valid else "-"}</td>'
            f'<td>{_e(p.get("nodes_spanned", "-")) if valid else "-"}</td>'
            f'<td class="err">{"<br>".join(_e(x) for x in errs)}</td></tr>')
    if not pol_rows:
        pol_rows.append('<tr><td colspan="5" class="muted">no NetworkPolicies</td></tr>')
    w_rows = []
    for w in st.get("watches", []):
        w_rows.append(
            f'<tr><td>{_e(w.get("kind"))}</td><td>{_badge(bool(w.get("listed")), "listed", "not yet")}</td>'
            f'<td>{_badge(bool(w.get("connected")), "open", "reconnecting", warn=True)}</td>'
            f'<td>{_e(w.get("objects"))}</td><td><code>{_e(w.get("resource_version"))}</code></td>'
            f'<td>{_e(w.get("restarts"))}</td><td>{_e(w.get("relists"))}</td><td>{_e(w.get("errors"))}</td>'
            f'<td class="err">{_e(w.get("last_error"))}</td></tr>')
    ready = bool(st.get("ready"))
    w = st.get("writer") or {}
    d = st.get("distributor") or {}
    pipeline = (f'writer: {_e(w.get("batches", 0))} batches, {_e(w.get("changes", 0))} changes, '
                f'{_e(w.get("queued", 0))} queued, last publish {_ago(w.get("last_publish_unix"), now)}'
                f' &middot; sent: {_e(d.get("snapshots_sent", 0))} snapshots, {_e(d.get("deltas_sent", 0))} deltas, '
                f'{_e(d.get("in_syncs_sent", 0))} in-sync')
    ch = st.get("channel")
    if ch:
        cert = ch.get("certificate") or {}
        tls = (f'TLS {_e(ch.get("tls"))}' + (f' (certificate until {_e(str(cert["not_after"])[:10])})'
                                             if cert.get("not_after") else "")
               if ch.get("tls") != "insecure" else '<span class="badge warn">plaintext</span>')
        auth = (f'agents proven by {_e(ch.get("auth"))}' if ch.get("auth") != "none"
                else '<span class="badge warn">agents not authenticated</span>')
        pipeline += f' &middot; gRPC: {tls}, {auth}, debug RPCs {_e(ch.get("debug_rpcs"))}'
    return tmpl.substitute(pipeline=pipeline,
        refresh=REFRESH_SECONDS, replica=_e(st.get("replica")),
        ready_badge=_badge(ready, "READY", "NOT READY (waiting for the first list of every kind)"),
        generated=_e(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))),
        totals=tot_html, node_rows="\n".join(node_rows), policy_rows="\n".join(pol_rows),
        watch_rows="\n".join(w_rows))


# --------------------------------------------------------------------------
# Input checking (pure)


def parse_explain_query(q: Mapping[str, str]) -> tuple[str, str, int, str]:
    """(src, dst, port, protocol) or ValueError naming the bad parameter."""
    out: list[str] = []
    for name in ("from", "to"):
        v = q.get(name, "")
        ns, sep, pod = v.partition("/")
        if not v:
            raise ValueError(f"parameter {name!r} is required (NAMESPACE/POD)")
        if not sep or not ns or not pod or "/" in pod:
            raise ValueError(f"parameter {name!r} must be NAMESPACE/POD, got {v!r}")
        out.append(v)
    port_s = q.get("port", "")
    if not port_s:
        raise ValueError("parameter 'port' is required (1-65535)")
    if not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
        raise ValueError(f"parameter 'port' must be a number 1-65535, got {port_s!r}")
    proto = q.get("protocol", "TCP").upper()
    if proto not in PROTOCOLS:
        raise ValueError(f"parameter 'protocol' must be one of {', '.join(PROTOCOLS)}, got {q.get('protocol')!r}")
    return out[0], out[1], int(port_s), proto


# --------------------------------------------------------------------------
# The aiohttp shell

SOURCE: web.AppKey[StatusSource] = web.AppKey("source", StatusSource)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, indent=1, sort_keys=True, default=str) + "\n",
                        status=status, content_type="application/json")


def _err(status: int, message: str) -> web.Response:
    return _json({"error": message, "status": status}, status)


async def _page(req: web.Request) -> web.Response:
    return web.Response(text=render_page(req.app[SOURCE].status()), content_type="text/html")


async def _status(req: web.Request) -> web.Response:
    return _json(req.app[SOURCE].status())


async def _node(req: web.Request) -> web.Response:
    node = req.match_info["node"]
    data = req.app[SOURCE].node_state_json(node)
    if data is None:
        return _err(404, f"no desired state for node {node!r} (unknown node, or controller not ready)")
    return _json(data)


async def _policy(req: web.Request) -> web.Response:
    key = f"{req.match_info['ns']}/{req.match_info['name']}"
    data = req.app[SOURCE].policy(key)
    if data is None:
        return _err(404, f"no NetworkPolicy {key!r}")
    return _json(data)


async def _explain(req: web.Request) -> web.Response:
    try:
        src, dst, port, proto = parse_explain_query(req.query)
    except ValueError as e:
        return _err(400, str(e))
    if not req.app[SOURCE].is_ready():
        return _err(503, "controller not ready: not every kind has been listed yet")
    try:
        return _json(req.app[SOURCE].explain(src, dst, port, proto))
    except ExplainError as e:
        return _err(404, str(e))


async def _healthz(req: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(req: web.Request) -> web.Response:
    if req.app[SOURCE].is_ready():
        return web.Response(text="ready\n")
    return web.Response(text="not ready: waiting for the first list of every kind\n", status=503)


async def _metrics(req: web.Request) -> web.Response:
    body, ctype = metrics.render()
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = ctype
    return resp


def make_app(source: StatusSource) -> web.Application:
    app = web.Application()
    app[SOURCE] = source
    app.router.add_get("/", _page)
    app.router.add_get("/api/v1/status", _status)
    app.router.add_get("/api/v1/nodes/{node}", _node)
    app.router.add_get("/api/v1/policies/{ns}/{name}", _policy)
    app.router.add_get("/api/v1/explain", _explain)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


class StatusServer:
    """Runs :func:`make_app` on HOST:PORT; ``port`` is the bound port."""

    def __init__(self, source: StatusSource, host: str, port: int) -> None:
        self._runner = web.AppRunner(make_app(source), access_log=None, handle_signals=False,
                                    shutdown_timeout=1.0)
        self._host = host
        self._want = port
        self.port = 0

    async def start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._want)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._want
        return self.port

    async def stop(self) -> None:
        await self._runner.cleanup()
