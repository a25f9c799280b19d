"""The list-and-watch loop: one task per kind keeps a slim cache of the
cluster's objects and forwards real changes to the writer.

Why our own loop and not ``kubernetes_asyncio.watch.Watch``: that helper
reconnects at once with no backoff, retries a 410 with the stale version
and then raises, has no read timeout, and turns a non-JSON body (a proxy's
HTML 502) into string events forever.  Here, per kind:

1. **list** (paged with ``limit``/``continue``) as raw JSON; every object is
   projected to a slim record (the projector comes from ``controller.parse``
   via the runtime) and the result is **reconciled** against the cache: only
   real differences are emitted (an object that is new or whose projection
   changed, and deletes for objects that are gone).  A relist after 410 Gone
   therefore drops no state and deletes nothing spuriously.  The first
   complete list is followed by a :class:`Listed` marker in the same message,
   which the runtime's readiness waits for.
2. **watch** from the list's resourceVersion (``allowWatchBookmarks``, a
   jittered ``timeoutSeconds``), reading lines ourselves with a read timeout
   (a silent stream is a stall).  Bookmarks advance the resourceVersion;
   events with an unchanged resourceVersion or an equal projection are
   dropped at the door.
3. on a clean end of the stream, watch again from the last resourceVersion;
   on 410 (HTTP status or an ERROR event) relist; on any other error (5xx,
   non-JSON body, stall, connection refused) wait a jittered exponential
   backoff and resume from the last resourceVersion (an object of another
   kind in the stream also relists: that stream cannot be trusted).

The pure pieces (:func:`backoff_delay`, :func:`apply_event`,
:func:`reconcile`) carry the logic and are table-tested; :class:`Watcher`
is the thin I/O shell.  This module does not know what the records mean,
does not touch the engine, and never blocks on its consumer (the sink is a
plain callable that enqueues).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from controller import metrics
from controller.settings import WatchSettings
from stockade import backoff

log = logging.getLogger("stockade.controller.watch")

def _retryable() -> tuple[type[BaseException], ...]:
    try:
        from kubernetes_asyncio.client.exceptions import ApiException
        from kubernetes_asyncio.config import ConfigException
    except ImportError:  # pragma: no cover - the controller always has it
        return (OSError, aiohttp.ClientError)
    return (OSError, aiohttp.ClientError, ApiException, ConfigException)


RETRYABLE = _retryable()

Kind = Literal["Namespace", "Pod", "Node", "NetworkPolicy"]
KINDS: tuple[Kind, ...] = ("Namespace", "Pod", "Node", "NetworkPolicy")
NAMESPACED: frozenset[str] = frozenset({"Pod", "NetworkPolicy"})


@dataclass(frozen=True, slots=True)
class Change:
    """One object changed: ``value`` is its new projection, None when it
    was deleted.  ``received`` is ``time.monotonic()`` at arrival (for the
    event-to-send latency)."""

    kind: Kind
    key: str  # "namespace/name" for namespaced kinds, "name" otherwise
    value: object | None
    received: float


@dataclass(frozen=True, slots=True)
class Listed:
    """A complete list of ``kind`` was reconciled (``relist``: not the first)."""

    kind: Kind
    count: int
    relist: bool = False


Message = Change | Listed
Sink = Callable[[Sequence[Message]], None]
Projector = Callable[[Mapping[str, Any]], object]
ListCall = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Cached:
    resource_version: str
    value: object


class WatchError(Exception):
    """A failure of one list or watch request; ``reason`` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Gone(Exception):
    """410 Gone: the resourceVersion is too old, relist."""


class BadObject(ValueError):
    """An object the projector rejected (not a policy validation error:
    those are projections too)."""


# --------------------------------------------------------------------------
# Pure pieces


def backoff_delay(attempt: int, s: WatchSettings, r: float) -> float:
    """Delay before retry number ``attempt`` (0-based); ``r`` in [0, 1)."""
    return backoff.jittered(s.backoff_initial, s.backoff_max, attempt, s.backoff_jitter, r)


def object_key(kind: str, obj: Mapping[str, Any]) -> tuple[str, str]:
    """(key, resourceVersion) of a raw object; BadObject when metadata is unusable."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise BadObject(f"{kind}: object without metadata.name")
    name: str = meta["name"]
    rv = meta.get("resourceVersion")
    rv = rv if isinstance(rv, str) else ""
    if kind in NAMESPACED:
        ns = meta.get("namespace")
        if not isinstance(ns, str) or not ns:
            raise BadObject(f"{kind} {name!r}: object without metadata.namespace")
        return f"{ns}/{name}", rv
    return name, rv


def apply_event(cache: dict[str, Cached], etype: str, key: str, rv: str,
                value: object | None) -> tuple[bool, object | None]:
    """Update ``cache`` with one watch event.  Returns (changed, new value):
    changed is False for no-ops (same resourceVersion, equal projection,
    delete of an unknown key)."""
    old = cache.get(key)
    if etype == "DELETED":
        if old is None:
            return False, None
        del cache[key]
        return True, None
    if old is not None and rv and old.resource_version == rv:
        return False, old.value
    cache[key] = Cached(rv, value)
    if old is not None and old.value == value:
        return False, value
    return True, value


def reconcile(cache: Mapping[str, Cached], listed: Mapping[str, Cached]) -> tuple[dict[str, Cached], list[tuple[str, object | None]]]:
    """A fresh list against the cache: (new cache, changes).  Changes are
    (key, value) for new or changed objects and (key, None) for objects no
    longer listed, sorted by key; equal objects produce nothing."""
    changes: list[tuple[str, object | None]] = []
    for key in sorted(listed):
        old = cache.get(key)
        new = listed[key]
        if old is None or old.value != new.value:
            changes.append((key, new.value))
    changes.extend((key, None) for key in sorted(cache) if key not in listed)
    changes.sort(key=lambda kv: kv[0])
    return dict(listed), changes


def _snippet(body: bytes | str, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------
# The I/O shell


def api_call(api_client: Any, kind: Kind) -> ListCall:
    """The kubernetes-asyncio list function of ``kind`` (all namespaces)."""
    from kubernetes_asyncio import client

    if kind == "Namespace":
        fn: ListCall = client.CoreV1Api(api_client).list_namespace
    elif kind == "Pod":
        fn = client.CoreV1Api(api_client).list_pod_for_all_namespaces
    elif kind == "Node":
        fn = client.CoreV1Api(api_client).list_node
    else:
        fn = client.NetworkingV1Api(api_client).list_network_policy_for_all_namespaces
    return fn


@dataclass
class WatchStatus:
    """What the status page shows per kind."""

    kind: str
    listed: bool = False
    connected: bool = False
    objects: int = 0
    resource_version: str = ""
    restarts: int = 0
    relists: int = 0
    errors: int = 0
    last_error: str = ""
    last_error_age: float | None = None

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "listed": self.listed, "connected": self.connected,
                "objects": self.objects, "resource_version": self.resource_version,
                "restarts": self.restarts, "relists": self.relists, "errors": self.errors,
                "last_error": self.last_error, "last_error_age": self.last_error_age}


class Watcher:
    """List-and-watch one kind forever (until cancelled); see the module doc.

    ``cache`` maps key -> (resourceVersion, projection) of every object the
    last list and the watch since then showed.  ``resource_version`` is the
    version to resume from (the list's, then each event's or bookmark's).
    """

    def __init__(self, kind: Kind, call: ListCall, project: Projector, sink: Sink,
                 settings: WatchSettings, *, rand: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.kind: Kind = kind
        self._call = call
        self._project = project
        self._sink = sink
        self._s = settings
        self._rand = rand
        self._clock = clock
        self._sleep = sleep
        self.cache: dict[str, Cached] = {}
        self.resource_version = ""
        self.listed = False
        self._attempt = 0
        self._last_error_at: float | None = None
        self.state = WatchStatus(kind)
        self._resp: Any = None
        self._stopping = False

    def status(self) -> WatchStatus:
        self.state.objects = len(self.cache)
        self.state.listed = self.listed
        self.state.resource_version = self.resource_version
        self.state.last_error_age = (None if self._last_error_at is None
                                     else round(self._clock() - self._last_error_at, 1))
        return self.state

    def stop(self) -> None:
        """Shutdown: :meth:`run` returns at its next step instead of
        retrying, and the open stream (if any) is closed now."""
        self._stopping = True
        if self._resp is not None:
            self._resp.close()

    async def run(self) -> None:
        """Run until cancelled.  A watcher that already listed (its task was
        restarted) resumes watching from its resourceVersion."""
        need_list = not self.listed or not self.resource_version
        while not self._stopping:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                    self._attempt = 0
                await self._watch_once()
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("%s: resourceVersion %s is gone (410), relisting", self.kind, self.resource_version)
                self.state.relists += 1
                metrics.WATCH_RELISTS.labels(self.kind).inc()
                need_list = True
                if self._attempt > 0:  # 410 right after an error: still back off
                    await self._backoff()
            except WatchError as e:
                self._error(e.reason, str(e))
                if self.listed:
                    self.state.restarts += 1
                    metrics.WATCH_RESTARTS.labels(self.kind, e.reason).inc()
                if not self.resource_version or e.reason == "wrong_kind":
                    # A stream that mixes kinds cannot be trusted from this
                    # version on: start over from a fresh list (reconciled).
                    need_list = True
                await self._backoff()
            except RETRYABLE as e:  # client-side failures (sockets, TLS, credentials): retried, loudly
                self._error("client", f"{type(e).__name__}: {e}")
                await self._backoff()
            # Anything else is a bug here or in the projector's caller: it
            # propagates, the task dies and the process exits (root task).

    def _error(self, reason: str, message: str) -> None:
        if self._stopping:
            return
        self.state.errors += 1
        self.state.last_error = f"{reason}: {message}"
        self._last_error_at = self._clock()
        self.state.connected = False
        metrics.WATCH_ERRORS.labels(self.kind, reason).inc()
        log.warning("%s watch: %s: %s", self.kind, reason, message)

    async def _backoff(self) -> None:
        if self._stopping:
            return
        delay = backoff_delay(self._attempt, self._s, self._rand())
        self._attempt += 1
        log.debug("%s: retry in %.3fs (attempt %d)", self.kind, delay, self._attempt)
        await self._sleep(delay)

    async def _request(self, **kwargs: Any) -> Any:
        """Open one request; returns the response with status 200 or raises."""
        try:
            async with asyncio.timeout(self._s.connect_timeout + self._s.read_timeout):
                resp = await self._call(_preload_content=False, **kwargs)
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise WatchError("connect", f"no response: {type(e).__name__}") from None
        except aiohttp.ClientError as e:
            raise WatchError("connect", f"{type(e).__name__}: {e}") from None
        if resp.status == 200:
            return resp
        try:
            async with asyncio.timeout(self._s.connect_timeout):
                body = await resp.content.read(4096)
        except Exception:  # the status says enough
            body = b""
        finally:
            resp.close()
        if resp.status == 410:
            raise Gone()
        reason = "http_5xx" if resp.status >= 500 else "http_4xx"
        raise WatchError(reason, f"HTTP {resp.status}: {_snippet(body) or '(empty body)'}")

    def _project_obj(self, obj: Any) -> tuple[str, str, object]:
        if not isinstance(obj, Mapping):
            raise BadObject(f"{self.kind}: expected an object, got {type(obj).__name__}")
        key, rv = object_key(self.kind, obj)
        try:
            value = self._project(obj)
        except Exception as e:  # the projector names what is wrong
            raise BadObject(f"{self.kind} {key}: {e}") from e
        return key, rv, value

    async def _list(self) -> None:
        items: list[Any] = []
        cont: str | None = None
        rv = ""
        timeout = aiohttp.ClientTimeout(total=self._s.list_timeout, connect=self._s.connect_timeout)
        while True:
            kwargs: dict[str, Any] = {"limit": self._s.list_page_size, "_request_timeout": timeout}
            if cont:
                kwargs["_continue"] = cont
            resp = await self._request(**kwargs)
            try:
                async with asyncio.timeout(self._s.list_timeout):
                    body = await resp.read()
            except (TimeoutError, aiohttp.ClientError) as e:
                raise WatchError("list_read", f"{type(e).__name__}: {e}") from None
            finally:
                resp.close()
            try:
                data = json.loads(body)
                page = data["items"] or []
                meta = data.get("metadata") or {}
            except (ValueError, KeyError, TypeError, AttributeError):
                raise WatchError("bad_json", f"list body is not a {self.kind} list: {_snippet(body)}") from None
            if data.get("kind", f"{self.kind}List") != f"{self.kind}List":
                raise WatchError("wrong_kind", f"list of {self.kind} answered with kind {data.get('kind')!r}")
            items.extend(page)
            rv = str(meta.get("resourceVersion") or "")
            cont = meta.get("continue") or None
            if not cont:
                break
        fresh: dict[str, Cached] = {}
        cache = self.cache
        for obj in items:
            try:
                if isinstance(obj, Mapping):
                    # Same key and resourceVersion: the very object we have; no re-projection.
                    key, orv = object_key(self.kind, obj)
                    old = cache.get(key)
                    if old is not None and orv and old.resource_version == orv:
                        fresh[key] = old
                        continue
                key, orv, value = self._project_obj(obj)
            except BadObject as e:
                self._error("bad_object", str(e))
                # Keep what we knew of it: a broken object must not drop state.
                try:
                    key = object_key(self.kind, obj)[0]
                except BadObject:
                    continue
                if key in self.cache:
                    fresh[key] = self.cache[key]
                continue
            fresh[key] = Cached(orv, value)
        now = self._clock()
        self.cache, diffs = reconcile(self.cache, fresh)
        relist = self.listed
        self.resource_version = rv
        msgs: list[Message] = [Change(self.kind, k, v, now) for k, v in diffs]
        msgs.append(Listed(self.kind, len(self.cache), relist))
        self.listed = True
        for _, v in diffs:
            metrics.WATCH_EVENTS.labels(self.kind, "DELETED" if v is None else "LISTED").inc()
        metrics.WATCH_LISTED.labels(self.kind).set(1)
        metrics.OBJECTS.labels(self.kind).set(len(self.cache))
        log.info("%s: %s %d objects at resourceVersion %s (%d changes)",
                 self.kind, "relisted" if relist else "listed", len(self.cache), rv, len(diffs))
        self._sink(msgs)

    async def _watch_once(self) -> None:
        lo, hi = self._s.timeout_seconds_min, self._s.timeout_seconds_max
        tsec = lo + int((hi - lo) * self._rand())
        timeout = aiohttp.ClientTimeout(connect=self._s.connect_timeout, sock_connect=self._s.connect_timeout)
        started = self._clock()
        resp = await self._request(watch=True, resource_version=self.resource_version,
                                   allow_watch_bookmarks=True, timeout_seconds=tsec,
                                   _request_timeout=timeout)
        self._resp = resp
        self.state.connected = True
        events = 0
        try:
            while True:
                try:
                    async with asyncio.timeout(self._s.read_timeout):
                        line = await resp.content.readline()
                except TimeoutError:
                    raise WatchError("stall", f"no data for {self._s.read_timeout}s at "
                                     f"resourceVersion {self.resource_version}") from None
                except ValueError as e:  # aiohttp: line longer than its buffer
                    raise WatchError("bad_json", f"unreadable line: {e}") from None
                except aiohttp.ClientError as e:
                    raise WatchError("connect", f"stream broke: {type(e).__name__}: {e}") from None
                if not line:
                    break
                if not line.strip():
                    continue
                self._handle_line(line)
                events += 1
                self._attempt = 0
        finally:
            self._resp = None
            self.state.connected = False
            resp.close()
        if events == 0 and self._clock() - started < self._s.min_stream_seconds:
            raise WatchError("closed", "watch stream closed at once without events")
        self.state.restarts += 1
        metrics.WATCH_RESTARTS.labels(self.kind, "closed").inc()

    def _handle_line(self, line: bytes) -> None:
        try:
            ev = json.loads(line)
            etype = ev["type"]
            obj = ev["object"]
            if not isinstance(etype, str) or not isinstance(obj, Mapping):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise WatchError("bad_json", f"not a watch event: {_snippet(line)}") from None
        if etype == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise Gone()
            raise WatchError("watch_error", f"ERROR event {code}: {_snippet(str(obj.get('message', '')))}")
        if etype == "BOOKMARK":
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if isinstance(rv, str) and rv:
                self.resource_version = rv
            return
        if etype not in ("ADDED", "MODIFIED", "DELETED"):
            raise WatchError("bad_json", f"unknown watch event type {etype!r}")
        if obj.get("kind", self.kind) != self.kind:
            raise WatchError("wrong_kind", f"watch of {self.kind} sent a {obj.get('kind')!r} object: {_snippet(line)}")
        received = self._clock()
        try:
            key, rv, value = self._project_obj(obj) if etype != "DELETED" else (*object_key(self.kind, obj), None)
        except BadObject as e:
            self._error("bad_object", str(e))
            rv = (obj.get("metadata") or {}).get("resourceVersion") if isinstance(obj.get("metadata"), Mapping) else None
            if isinstance(rv, str) and rv:
                self.resource_version = rv
            return
        if rv:
            self.resource_version = rv
        changed, new = apply_event(self.cache, etype, key, rv, value)
        if not changed:
            metrics.WATCH_UNCHANGED.labels(self.kind).inc()
            return
        metrics.WATCH_EVENTS.labels(self.kind, etype).inc()
        metrics.OBJECTS.labels(self.kind).set(len(self.cache))
        self._sink([Change(self.kind, key, new, received)])
