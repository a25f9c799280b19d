"""The HTTP shell: Kubernetes REST paths onto the store, in aiohttp.

Routes (``{gv}`` is ``api/v1`` or ``apis/<group>/<version>``):

- ``/{gv}/<plural>``: list / watch (all namespaces for namespaced kinds),
  create (cluster-scoped), deletecollection.
- ``/{gv}/namespaces/<ns>/<plural>``: the same inside a namespace.
- ``/{gv}/[namespaces/<ns>/]<plural>/<name>[/status]``: get, replace (PUT),
  patch (merge, strategic merge, JSON patch), delete.
- ``POST /apis/authentication.k8s.io/v1/tokenreviews``: answered by
  ``tokens`` (a review of a token the emulator minted), never stored.
- discovery (``/version``, ``/api``, ``/apis`` ...), ``/openapi/v3``,
  ``/healthz``, ``/livez``, ``/readyz``; admin under ``/_emulator/``.

Every failure is a ``Status`` body with the real server's code and reason;
a fault middleware (see ``faults``) runs in front of everything but admin.
Unknown resources are 404 for reads; a create of an unknown resource
registers it as a generic kind (scope from the URL, kind from the body).

Not here: the rules of storage (``store``), the watch stream (``watch``),
lifecycle (``emulator``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from stockade.kubeemu import discovery, errors, patch, protobuf, table
from stockade.kubeemu.errors import JSON, ApiError
from stockade.kubeemu.faults import BAD_GATEWAY_HTML, Faults
from stockade.kubeemu.resources import ResourceType
from stockade.kubeemu.selectors import both, parse_field_selector, parse_label_selector
from stockade.kubeemu.store import Store, parse_rv
from stockade.kubeemu.tokens import TokenAuthority, token_review
from stockade.kubeemu.watch import WatchHub, WatchRequest, serve_watch

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STORE_KEY = web.AppKey("store", Store)
FAULTS_KEY = web.AppKey("faults", Faults)
HUB_KEY = web.AppKey("hub", WatchHub)
TOKENS_KEY = web.AppKey("tokens", TokenAuthority)


@dataclass
class Settings:
    bookmark_interval: float = 60.0
    stopping: asyncio.Event | None = None  # set at shutdown: stalled requests give up


SETTINGS_KEY = web.AppKey("settings", Settings)


def respond(body: JSON, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(body, separators=(",", ":")).encode(),
                        content_type="application/json")


def error_response(exc: ApiError) -> web.Response:
    return respond(exc.status(), exc.code)


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    faults = request.app[FAULTS_KEY]
    decision = faults.decide(request.path)
    if decision.delay_seconds:
        await asyncio.sleep(decision.delay_seconds)
    while decision.action == "stall":
        if not await _hold(request, decision.stall_seconds):
            return web.Response(status=499)  # never reaches the client: it is gone
        decision = request.app[FAULTS_KEY].decide(request.path)  # the window is over: serve as usual
    if decision.action == "error" and decision.error is not None:
        return error_response(decision.error)
    if decision.action == "bad_gateway":
        return web.Response(status=502, text=BAD_GATEWAY_HTML, content_type="text/html")
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)


async def _hold(request: web.Request, seconds: float) -> bool:
    """Send nothing for ``seconds``; False if the client gave up or the server is stopping meanwhile."""
    stopping = request.app[SETTINGS_KEY].stopping
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing() or (stopping is not None and stopping.is_set()):
            if transport is not None:
                transport.abort()
            return False
        await asyncio.sleep(min(0.05, max(0.0, deadline - loop.time())))
    return True


# ---- path parsing ----------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    group: str
    version: str
    plural: str
    namespace: str | None  # None: all namespaces / cluster scope
    name: str
    subresource: str


def parse_target(group: str, version: str, rest: list[str]) -> Target:
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        ns, rest = rest[1], rest[2:]
    else:
        ns = None
    if not rest or len(rest) > 3 or any(part == "" for part in rest):
        raise errors.resource_not_found()
    return Target(group, version, rest[0], ns, rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else "")


def resolve(store: Store, target: Target, body: JSON | None = None) -> ResourceType:
    rt = store.registry.lookup(target.group, target.version, target.plural)
    if rt is not None:
        if target.namespace is not None and not rt.namespaced:
            raise errors.resource_not_found()
        return rt
    if body is None or not isinstance(body.get("kind"), str) or not target.plural.isalnum():
        raise errors.resource_not_found()
    return store.registry.add(ResourceType(
        target.group, target.version, target.plural, body["kind"], target.namespace is not None
    ))


# ---- request helpers -----------------------------------------------------------------

async def read_json(request: web.Request) -> Any:
    raw = await request.read()
    if request.content_type == protobuf.MEDIA_TYPE:
        return protobuf.decode_object(raw)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from None


def flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def dry_run(request: web.Request) -> bool:
    value = request.query.get("dryRun")
    if value not in (None, "", "All"):
        raise errors.bad_request(f"dryRun: Unsupported value: {value!r}: supported values: \"All\"")
    return value == "All"


def list_kind(rt: ResourceType) -> str:
    return f"{rt.kind}List"


# ---- handlers ----------------------------------------------------------------------

async def handle_api(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE_KEY]
    parts = [p for p in request.path.split("/") if p != ""]
    if parts[0] == "api":
        if len(parts) == 1:
            host = request.host or "127.0.0.1"
            return respond(discovery.api_versions(host))
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) == 1:
            return respond(discovery.group_list(store.registry))
        if len(parts) == 2:
            doc = discovery.group(store.registry, parts[1])
            if doc is None:
                raise errors.resource_not_found()
            return respond(doc)
        group, version, rest = parts[1], parts[2], parts[3:]
    if not rest:
        doc = discovery.resource_list(store.registry, group, version)
        if doc is None:
            raise errors.resource_not_found()
        return respond(doc)
    target = parse_target(group, version, rest)
    rt = store.registry.lookup(group, version, target.plural)
    if rt is not None and not rt.stored:
        return await virtual_request(request, rt, target)
    if target.name:
        return await object_request(request, store, target)
    return await collection_request(request, store, target)


async def virtual_request(request: web.Request, rt: ResourceType, target: Target) -> web.StreamResponse:
    """Resources answered, never stored: ``POST .../tokenreviews`` (see ``tokens``)."""
    if target.namespace is not None or target.name:
        raise errors.resource_not_found()
    if request.method != "POST":
        raise errors.method_not_allowed(request.method)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request must be a JSON object")
    if body.get("kind", rt.kind) != rt.kind:
        raise errors.bad_request(f"expected kind {rt.kind}, got {body.get('kind')!r}")
    spec = body.get("spec")
    status = request.app[TOKENS_KEY].review(spec)
    return respond(token_review(spec if isinstance(spec, dict) else {}, status), 201)


async def collection_request(request: web.Request, store: Store, target: Target) -> web.StreamResponse:
    if request.method == "GET":
        rt = resolve(store, target)
        return await list_or_watch(request, store, rt, target.namespace)
    if request.method == "POST":
        body = await read_json(request)
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        rt = resolve(store, target, body)
        if rt.namespaced and target.namespace is None:
            raise errors.method_not_allowed("POST")
        created = store.create(rt, body, target.namespace or "", dry_run=dry_run(request))
        return respond(created, 201)
    if request.method == "DELETE":
        rt = resolve(store, target)
        match = both(parse_label_selector(request.query.get("labelSelector")),
                     parse_field_selector(request.query.get("fieldSelector")))
        items, _ = store.list(rt, target.namespace, match)
        for obj in items:
            store.delete(rt, obj["metadata"]["name"], obj["metadata"].get("namespace", ""), dry_run=dry_run(request))
        return respond({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
    raise errors.method_not_allowed(request.method)


async def list_or_watch(request: web.Request, store: Store, rt: ResourceType, namespace: str | None) -> web.StreamResponse:
    q = request.query
    match = both(parse_label_selector(q.get("labelSelector")), parse_field_selector(q.get("fieldSelector")))
    rv_text = q.get("resourceVersion")
    rv = parse_rv(rv_text)
    rv_match = q.get("resourceVersionMatch", "")
    if rv_match not in ("", "Exact", "NotOlderThan"):
        raise errors.bad_request(f'resourceVersionMatch: Unsupported value: "{rv_match}": supported values: "Exact", "NotOlderThan"')
    faults = request.app[FAULTS_KEY]
    if flag(request, "watch"):
        timeout = q.get("timeoutSeconds")
        try:
            seconds = float(timeout) if timeout not in (None, "") else None
        except ValueError:
            raise errors.bad_request(f"timeoutSeconds: invalid value {timeout!r}") from None
        req = WatchRequest(rt, namespace, match, rv, flag(request, "allowWatchBookmarks"), seconds,
                           flag(request, "sendInitialEvents"), table.wants_table(request.headers.get("Accept", "")))
        return await serve_watch(request, request.app[HUB_KEY], req,
                                 request.app[SETTINGS_KEY].bookmark_interval, faults.take_expire())
    if rv_match and rv_text in (None, ""):
        raise errors.bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
    if rv_match == "Exact" and rv == 0:
        raise errors.bad_request('resourceVersionMatch "Exact" is forbidden for resourceVersion "0"')
    if faults.take_expire():
        raise errors.expired_list()
    items, list_rv = store.list(rt, namespace, match, rv, exact=rv_match == "Exact")
    if table.wants_table(request.headers.get("Accept", "")):
        return respond(table.table(rt, items, str(list_rv), datetime.now(UTC)))
    for item in items:  # the real server leaves type meta off list items of built-in kinds
        item.pop("apiVersion", None)
        item.pop("kind", None)
    return respond({"kind": list_kind(rt), "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": str(list_rv)}, "items": items})


PATCHERS: dict[str, Callable[[ResourceType, Any, Any], Any]] = {
    "application/merge-patch+json": lambda rt, current, body: patch.merge_patch(current, body),
    "application/strategic-merge-patch+json": lambda rt, current, body: patch.strategic_merge_patch(
        current, body, patch.REPLACE_PATHS.get(rt.key, frozenset())),
    "application/json-patch+json": lambda rt, current, body: patch.json_patch(current, body),
}


async def object_request(request: web.Request, store: Store, target: Target) -> web.StreamResponse:
    rt = resolve(store, target)
    ns = target.namespace or ""
    if target.subresource and (target.subresource != "status" or not rt.has_status):
        raise errors.resource_not_found()
    if request.method == "GET":
        obj = store.get(rt, target.name, ns)
        if table.wants_table(request.headers.get("Accept", "")):
            return respond(table.table(rt, [obj], obj["metadata"]["resourceVersion"], datetime.now(UTC)))
        return respond(obj)
    if request.method == "PUT":
        body = await read_json(request)
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        return respond(store.update(rt, body, ns, target.name, target.subresource, dry_run(request)))
    if request.method == "PATCH":
        content_type = request.content_type
        patcher = PATCHERS.get(content_type)
        if patcher is None:
            raise errors.unsupported_media_type(content_type)
        body = await read_json(request)
        fn = patcher

        def apply(current: JSON) -> Any:
            return fn(rt, current, body)

        return respond(store.patch(rt, target.name, apply, ns, target.subresource, dry_run(request)))
    if request.method == "DELETE":
        raw = await request.read()
        options: JSON = {}
        if raw.strip():
            options = await read_json(request)
            if not isinstance(options, dict):
                raise errors.bad_request("DeleteOptions must be a JSON object")
        gone = store.delete(rt, target.name, ns, options.get("preconditions"), dry_run(request))
        if rt.key in (("", "pods"), ("", "namespaces")):
            return respond(gone)
        details: JSON = {"name": target.name, "kind": rt.plural, "uid": gone["metadata"].get("uid", "")}
        if rt.group:
            details = {"name": target.name, "group": rt.group, "kind": rt.plural, "uid": gone["metadata"].get("uid", "")}
        return respond({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
    raise errors.method_not_allowed(request.method)


async def handle_version(request: web.Request) -> web.StreamResponse:
    return respond(discovery.SERVER_VERSION)


async def handle_health(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


async def handle_openapi_v3(request: web.Request) -> web.StreamResponse:
    registry = request.app[STORE_KEY].registry
    rest = request.match_info.get("tail", "")
    if not rest:
        return respond(discovery.openapi_v3_root(registry))
    parts = rest.split("/")
    if parts[0] == "api" and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[0] == "apis" and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        raise errors.resource_not_found()
    if not registry.in_group_version(group, version):
        raise errors.resource_not_found()
    return respond(discovery.openapi_v3_document(registry, group, version))


async def handle_not_found(request: web.Request) -> web.StreamResponse:
    raise errors.resource_not_found()


def build_app(store: Store, faults: Faults, hub: WatchHub, settings: Settings,
              tokens: TokenAuthority | None = None) -> web.Application:
    from stockade.kubeemu.admin import add_admin_routes  # admin depends on this module's helpers

    app = web.Application(middlewares=[fault_middleware], client_max_size=16 * 1024 * 1024)
    app[STORE_KEY] = store
    app[FAULTS_KEY] = faults
    app[HUB_KEY] = hub
    app[SETTINGS_KEY] = settings
    app[TOKENS_KEY] = tokens if tokens is not None else TokenAuthority(store)
    app.router.add_get("/version", handle_version)
    for path in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(path, handle_health)
    app.router.add_get("/openapi/v3", handle_openapi_v3)
    app.router.add_get("/openapi/v3/{tail:.+}", handle_openapi_v3)
    add_admin_routes(app)
    for prefix in ("/api", "/apis"):
        app.router.add_route("*", prefix, handle_api)
        app.router.add_route("*", prefix + "/{tail:.*}", handle_api)
    app.router.add_route("*", "/{tail:.*}", handle_not_found)
    return app
