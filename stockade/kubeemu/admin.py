"""Admin endpoints under ``/_emulator/``: arm faults and mint tokens over HTTP.

For the lab, where the emulator runs as a process in another network
namespace and tests cannot reach its Python API.  Every endpoint takes an
optional JSON body and answers the armed faults as JSON:

====================================  =============================================
``GET  /_emulator/faults``            the armed faults
``POST /_emulator/faults/cut-watches`` ``{"clean": false}``: drop (or end) every open watch
``POST /_emulator/faults/expire``      ``{"count": 1}``: 410 for the next lists/watches
``POST /_emulator/faults/compact``     drop the whole history window
``POST /_emulator/faults/delay``       ``{"ms": 250}``: delay every response (0: off)
``POST /_emulator/faults/error``       ``{"count": 1, "code": 500, "pathPrefix": ""}``
``POST /_emulator/faults/bad-gateway`` ``{"count": 1, "pathPrefix": ""}``: HTML 502
``POST /_emulator/faults/stall``       ``{"seconds": 5}``: accept, never answer
``POST /_emulator/faults/clear``       disarm everything
``POST /_emulator/tokens``             mint a token: ``{"namespace", "serviceAccount",
                                       "pod", "audiences": ["stockade"],
                                       "ttlSeconds": 3600}`` -> ``{"token",
                                       "expirationTimestamp"}`` (``pod`` optional)
====================================  =============================================

Bad input is a 400 ``Status`` naming the field.  Not here: the fault logic
itself (``faults``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from stockade.kubeemu import errors
from stockade.kubeemu.faults import Faults
from stockade.kubeemu.server import FAULTS_KEY, STORE_KEY, TOKENS_KEY, respond


def _int(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise errors.bad_request(f"{name}: must be a non-negative integer, got {value!r}")
    return value


def _number(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name, default)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise errors.bad_request(f"{name}: must be a non-negative number, got {value!r}")
    return float(value)


def _str(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise errors.bad_request(f"{name}: must be a string, got {value!r}")
    return value


def _arm(body: dict[str, Any], faults: Faults, name: str, request: web.Request) -> None:
    actions: dict[str, Callable[[], None]] = {
        "cut-watches": lambda: faults.cut_watches(bool(body.get("clean", False))),
        "expire": lambda: faults.expire_next(_int(body, "count", 1)),
        "compact": lambda: request.app[STORE_KEY].compact(),
        "delay": lambda: faults.delay(_int(body, "ms", 0)),
        "error": lambda: faults.fail_next(_int(body, "count", 1), _int(body, "code", 500), _str(body, "pathPrefix")),
        "bad-gateway": lambda: faults.bad_gateway_next(_int(body, "count", 1), _str(body, "pathPrefix")),
        "stall": lambda: faults.stall(_number(body, "seconds", 0)),
        "clear": faults.clear,
    }
    action = actions.get(name)
    if action is None:
        raise errors.ApiError(404, "NotFound", f"unknown fault {name!r}; known: {', '.join(sorted(actions))}")
    try:
        action()
    except ValueError as exc:
        raise errors.bad_request(str(exc)) from None


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body ({} when empty); a 400 naming what is wrong."""
    raw = await request.read()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise errors.bad_request(f"invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise errors.bad_request("the body must be a JSON object")
    return body


async def handle_fault(request: web.Request) -> web.StreamResponse:
    faults = request.app[FAULTS_KEY]
    _arm(await _body(request), faults, request.match_info["name"], request)
    return respond(faults.describe())


async def handle_describe(request: web.Request) -> web.StreamResponse:
    return respond(request.app[FAULTS_KEY].describe())


async def handle_token(request: web.Request) -> web.StreamResponse:
    """Mint a token as the kubelet would project it (the lab's agents get theirs here)."""
    body = await _body(request)
    namespace, sa = _str(body, "namespace") or "default", _str(body, "serviceAccount")
    if not sa:
        raise errors.bad_request("serviceAccount: required")
    pod = _str(body, "pod") or None
    audiences = body.get("audiences", ["stockade"])
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise errors.bad_request(f"audiences: must be a list of strings, got {audiences!r}")
    token, exp = request.app[TOKENS_KEY].issue(namespace, sa, pod, audiences, _int(body, "ttlSeconds", 3600))
    stamp = datetime.fromtimestamp(exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return respond({"token": token, "expirationTimestamp": stamp}, 201)


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/_emulator/faults", handle_describe)
    app.router.add_post("/_emulator/faults/{name}", handle_fault)
    app.router.add_post("/_emulator/tokens", handle_token)
