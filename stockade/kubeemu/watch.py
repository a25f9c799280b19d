"""Watch streams: the chunked JSON-lines responses of ``?watch=true``.

Wire format, as the real apiserver sends it: HTTP 200, ``Content-Type:
application/json``, chunked; one ``{"type": ..., "object": ...}`` JSON
document per line, flushed per event.  Types are ADDED, MODIFIED, DELETED,
BOOKMARK and ERROR.

Semantics:
- resourceVersion absent or "0": synthetic ADDED for every current match,
  then changes.  Otherwise every change after that version, from the store's
  window; a version older than the window gives one ERROR event carrying a
  410 Expired Status (``too old resource version: R (F)``), then the stream
  ends.
- label/field selectors are applied to both sides of a change: an object
  that stops matching is sent as DELETED, one that starts matching as
  ADDED, like the watch cache does.
- ``allowWatchBookmarks``: a BOOKMARK every ``bookmark_interval`` seconds,
  whose object carries only apiVersion, kind and metadata.resourceVersion.
  ``sendInitialEvents=true`` ends the synthetic ADDED with a bookmark
  annotated ``k8s.io/initial-events-end: "true"``.
- ``timeoutSeconds`` ends the stream cleanly (final empty chunk).
- ``Accept: ...;as=Table`` (``kubectl get -w``): each object is sent as a
  one-row Table, as the server-side printer does.

The :class:`WatchHub` fans store events out to open streams and can end
them all: cleanly (shutdown, ``cut_watches(clean=True)``) or by aborting the
connection (``cut_watches()``).

Not here: routing and parameter parsing (``server``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

from stockade.kubeemu import errors, table
from stockade.kubeemu.errors import JSON, ApiError
from stockade.kubeemu.resources import ResourceType
from stockade.kubeemu.selectors import Matcher
from stockade.kubeemu.store import Event, Store

Stop = Literal["end", "abort", "gone"]
CLIENT_CHECK_INTERVAL = 0.5  # seconds between checks that an idle stream's client is still connected


@dataclass(eq=False)
class WatchStream:
    """One open watch: which store key it follows and its pending events."""

    key: tuple[str, str]
    queue: asyncio.Queue[Event | Literal["end", "abort"]] = field(default_factory=asyncio.Queue)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)  # woken by put()

    def put(self, item: Event | Literal["end", "abort"]) -> None:
        self.queue.put_nowait(item)
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)


class WatchHub:
    """Fans store events out to open watch streams; ends them on demand."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.streams: set[WatchStream] = set()
        self.closing = False
        store.listeners.append(self._on_event)

    def detach(self) -> None:
        if self._on_event in self.store.listeners:
            self.store.listeners.remove(self._on_event)

    def _on_event(self, event: Event) -> None:
        for stream in self.streams:
            if stream.key == event.key:
                stream.put(event)

    def cut(self, clean: bool = False) -> None:
        for stream in self.streams:
            stream.put("end" if clean else "abort")

    def shutdown(self) -> None:
        self.closing = True
        self.cut(clean=True)


@dataclass(frozen=True)
class WatchRequest:
    rt: ResourceType
    namespace: str | None
    match: Matcher
    rv: int | None
    bookmarks: bool
    timeout: float | None
    send_initial_events: bool
    as_table: bool = False  # kubectl get -w: each object becomes a one-row Table


def _line(kind: str, obj: JSON) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _event_line(req: WatchRequest, kind: str, obj: JSON) -> bytes:
    if req.as_table:
        obj = table.table(req.rt, [obj], obj["metadata"].get("resourceVersion", ""), datetime.now(UTC))
    return _line(kind, obj)


def translate(event: Event, req: WatchRequest) -> tuple[str, JSON] | None:
    """The event this watch should see for a store event, or None."""
    if req.namespace is not None and event.namespace != req.namespace:
        return None
    now = req.match(event.obj)
    before = event.prev is not None and req.match(event.prev)
    if event.type == "DELETED":
        return ("DELETED", event.obj) if before else None
    if now and before:
        return ("MODIFIED", event.obj)
    if now:
        return ("ADDED", event.obj)
    if before:
        return ("DELETED", event.obj)
    return None


def bookmark(rt: ResourceType, rv: int, initial_end: bool = False) -> JSON:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}


async def serve_watch(
    request: web.Request,
    hub: WatchHub,
    req: WatchRequest,
    bookmark_interval: float,
    expire: bool,
) -> web.StreamResponse:
    """Run one watch stream until timeout, cut, shutdown or client disconnect."""
    store = hub.store
    stream = WatchStream(req.rt.key)
    backlog: list[bytes] = []
    error: ApiError | None = None
    try:
        if expire:
            # the fault answers 410 without touching the history window
            raise errors.expired_watch(req.rv or 0, store.resource_version)
        if not req.rv:
            items, _ = store.list(req.rt, req.namespace, req.match)
            backlog = [_event_line(req, "ADDED", obj) for obj in items]
            if req.send_initial_events:
                backlog.append(_line("BOOKMARK", bookmark(req.rt, store.resource_version, initial_end=True)))
        else:
            backlog = [_event_line(req, kind, obj) for kind, obj in _visible(store.events_since(req.rv), req)]
        hub.streams.add(stream)  # same synchronous step as the backlog: no event can fall in between
    except ApiError as exc:
        if exc.code != 410:
            raise
        error = exc
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                       "Cache-Control": "no-cache, private"})
    response.enable_chunked_encoding()
    outcome: Stop = "gone"
    try:
        await response.prepare(request)
        if error is not None:
            await response.write(_line("ERROR", error.status()))
            await response.write_eof()
            return response
        for line in backlog:
            await response.write(line)
        outcome = await _pump(request, response, stream, req, hub, bookmark_interval)
        if outcome == "end":
            await response.write_eof()
    except ConnectionResetError:  # the client went away mid-write
        outcome = "gone"
    finally:
        hub.streams.discard(stream)
    if outcome != "end" and request.transport is not None:
        request.transport.abort()
    return response


def _visible(events: Iterable[Event], req: WatchRequest) -> list[tuple[str, JSON]]:
    out = []
    for event in events:
        if event.key != req.rt.key:  # the history window holds every kind's writes
            continue
        seen = translate(event, req)
        if seen is not None:
            out.append(seen)
    return out


async def _pump(
    request: web.Request,
    response: web.StreamResponse,
    stream: WatchStream,
    req: WatchRequest,
    hub: WatchHub,
    bookmark_interval: float,
) -> Stop:
    """Forward queued events, bookmarks when due, until a stop or the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + req.timeout if req.timeout is not None else None
    next_bookmark = loop.time() + bookmark_interval
    while not hub.closing:
        while not stream.queue.empty():  # everything already queued goes out first, without waiting
            item = stream.queue.get_nowait()
            if isinstance(item, str):
                return item
            seen = translate(item, req)
            if seen is not None:
                await response.write(_event_line(req, *seen))
        now = loop.time()
        if deadline is not None and now >= deadline:
            return "end"
        if req.bookmarks and now >= next_bookmark:
            # the queue is empty: every event up to the store's version has been sent
            await response.write(_line("BOOKMARK", bookmark(req.rt, hub.store.resource_version)))
            next_bookmark = now + bookmark_interval
            continue
        transport = request.transport
        if transport is None or transport.is_closing():
            return "gone"
        wait = [CLIENT_CHECK_INTERVAL]
        if deadline is not None:
            wait.append(deadline - now)
        if req.bookmarks:
            wait.append(next_bookmark - now)
        await _until_queued(stream, max(0.001, min(wait)))
    return "end"


async def _until_queued(stream: WatchStream, timeout: float) -> None:
    """Wait until the stream's queue is non-empty or ``timeout`` passes; consumes nothing."""
    waiter = asyncio.get_running_loop().create_future()
    stream.waiters.append(waiter)
    try:
        await asyncio.wait_for(waiter, timeout)
    except TimeoutError:
        pass
    finally:
        if waiter in stream.waiters:
            stream.waiters.remove(waiter)
