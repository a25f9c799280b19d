"""Who may use the controller's gRPC port: the I/O shell around ``controller.node_binding``.

Data flow for one call::

    gRPC metadata ──► bearer_token ──► ReviewCache hit? ──yes──┐
                                         │ no                   │
                                         ▼                      │
                 POST tokenreviews (audience stockade) ─► pod_ref
                 GET  pods/<bound pod>                 ─► agent_identity
                                         │ (cached)             │
                                         ▼                      ▼
                                 check_node(identity, node the client claims)
                                         │
                       admitted (counted) │ Rejection (counted by reason, logged,
                                          ▼ gRPC UNAUTHENTICATED / PERMISSION_DENIED / UNAVAILABLE)

:class:`AgentAuthenticator` asks the API server (TokenReview and a pod
read, both with the controller's own credentials: ``create tokenreviews``
and the ``get pods`` it already has) at most ``max_concurrent`` at a time,
and caches successes briefly.  :class:`GrpcGuard` is what the gRPC
servicers call: :meth:`GrpcGuard.admit_stream` at the start of an agent's
stream (after its hello names the node), :meth:`GrpcGuard.admit_debug`
before each debugging RPC.  The identity carries the token's expiry
(``AgentIdentity.expires``, from the unverified ``exp`` claim): the gRPC
server ends the stream then at the latest (``controller.stream_lifetime``),
so a stream never outlives the credentials it was admitted with.

Debugging RPCs (``ListNodes``, ``GetNodeState``, ``Explain``), by
``--debug-rpcs``: ``agent`` (the default with ``--auth tokenreview``): the
caller needs a valid agent token, and ``GetNodeState`` answers only for
the caller's own node, so a stolen token reveals no more than the agent
already receives (an operator mints one with ``kubectl create token
stockade-agent --audience stockade --bound-object-kind Pod
--bound-object-name <agent pod>``); ``off``: PERMISSION_DENIED for all;
``open``: anyone (the default with ``--auth none``, as before).  Health
and reflection stay open: they reveal nothing about the cluster.

Not here: the rules (``node_binding``), TLS (``serving_tls``), the
servicers (``grpc_server``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Literal

from controller import metrics
from controller.node_binding import (
    AgentIdentity,
    Expectation,
    Reason,
    Rejection,
    ReviewCache,
    agent_identity,
    bearer_token,
    check_node,
    pod_ref,
    review_body,
    status_code_name,
    token_expiry,
    token_key,
)

log = logging.getLogger("stockade.controller.auth")

DebugAccess = Literal["agent", "open", "off"]
Rpc = Literal["stream", "debug"]


class AgentAuthenticator:
    """Prove agents with TokenReview + their pod; see the module docstring.

    ``api_client``: a kubernetes-asyncio ``ApiClient`` with the
    controller's credentials.  ``cache_ttl`` seconds of trust in a proven
    token (also the longest a deleted pod's token keeps working),
    ``cache_size`` tokens at most; ``timeout`` per API request.
    """

    def __init__(self, api_client: Any, expect: Expectation, *, cache_ttl: float = 10.0, cache_size: int = 4096,
                 max_concurrent: int = 16, timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api_client = api_client
        self.expect = expect
        self.cache = ReviewCache(cache_ttl, cache_size, clock)
        self.timeout = timeout
        self._limit = asyncio.Semaphore(max_concurrent)
        self._clock = clock
        # reason -> (monotonic time of the last log line, lines suppressed since)
        self._logged: dict[str, tuple[float, int]] = {}

    async def identify(self, metadata: Iterable[tuple[str, Any]] | None) -> AgentIdentity:
        """The agent the call's token proves, or raise :class:`Rejection`."""
        token = bearer_token(metadata)
        key = token_key(token)
        cached = self.cache.get(key)
        if cached is not None:
            metrics.TOKEN_REVIEW_CACHE_HITS.inc()
            return cached
        async with self._limit:
            try:
                review = await self._post_review(token)
                ref = pod_ref(review, self.expect)
            except Rejection as e:
                metrics.TOKEN_REVIEWS.labels("error" if e.reason is Reason.REVIEW_FAILED else "rejected").inc()
                raise
            metrics.TOKEN_REVIEWS.labels("authenticated").inc()
            pod = await self._get_pod(ref.namespace, ref.name)
        # exp read only to schedule the stream's end and the cache entry's
        identity = replace(agent_identity(ref, pod, self.expect), expires=token_expiry(token))
        self.cache.put(key, identity)
        return identity

    async def authorize(self, metadata: Iterable[tuple[str, Any]] | None, node: str | None, rpc: Rpc,
                        peer: str = "") -> AgentIdentity:
        """:meth:`identify`, then (``node`` given) the node check; counted and
        logged either way.  Raises :class:`Rejection`."""
        try:
            identity = await self.identify(metadata)
            if node is not None:
                check_node(identity, node)
        except Rejection as e:
            metrics.AGENT_AUTH_REJECTED.labels(e.reason.value, rpc).inc()
            self._log_rejection(e, rpc, peer, node)
            raise
        metrics.AGENT_AUTH_ACCEPTED.labels(rpc).inc()
        return identity

    def _log_rejection(self, e: Rejection, rpc: Rpc, peer: str, node: str | None) -> None:
        """One line per reason per 10 s at most (a flood of bad clients must not flood the log)."""
        now = self._clock()
        last, suppressed = self._logged.get(e.reason.value, (float("-inf"), 0))
        if now - last < 10.0:
            self._logged[e.reason.value] = (last, suppressed + 1)
            return
        self._logged[e.reason.value] = (now, 0)
        more = f" ({suppressed} more like it suppressed)" if suppressed else ""
        log.warning("rejected %s from %s%s: %s: %s%s", rpc, peer or "?", f" claiming node {node!r}" if node else "",
                    e.reason.value, e.message, more)

    async def _post_review(self, token: str) -> dict[str, Any]:
        from kubernetes_asyncio import client

        api = client.AuthenticationV1Api(self.api_client)
        body = review_body(token, self.expect)
        status, data = await self._call(api.create_token_review, body=body)
        if status not in (200, 201) or not isinstance(data, dict):
            raise Rejection(Reason.REVIEW_FAILED, f"cannot check the token now (TokenReview: HTTP {status}); retry")
        return data

    async def _get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes_asyncio import client

        api = client.CoreV1Api(self.api_client)
        status, data = await self._call(api.read_namespaced_pod, name, namespace)
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            raise Rejection(Reason.REVIEW_FAILED, f"cannot read pod {namespace}/{name} now (HTTP {status}); retry")
        return data

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, Any]:
        """One API request as raw JSON: (HTTP status, parsed body or None)."""
        try:
            async with asyncio.timeout(self.timeout):
                resp = await fn(*args, _preload_content=False, **kwargs)
                try:
                    raw = await resp.read()
                finally:
                    resp.release()
        except Exception as e:  # network, timeout, client errors: the API server could not be asked
            raise Rejection(Reason.REVIEW_FAILED, f"cannot reach the API server to check the token "
                                                  f"({type(e).__name__}); retry") from None
        try:
            return int(resp.status), json.loads(raw)
        except ValueError:
            return int(resp.status), None


class GrpcGuard:
    """The gRPC servicers' door; ``auth`` None means ``--auth none`` (streams
    admitted as before).  ``debug`` decides the debugging RPCs (module doc)."""

    def __init__(self, auth: AgentAuthenticator | None, debug: DebugAccess) -> None:
        if debug == "agent" and auth is None:
            raise ValueError("debug RPCs for agents only need token authentication")
        self.auth = auth
        self.debug = debug

    async def admit_stream(self, context: Any, node: str) -> AgentIdentity | None:
        """Check an agent stream whose hello named ``node``; aborts the call when refused."""
        if self.auth is None:
            return None
        try:
            return await self.auth.authorize(context.invocation_metadata(), node, "stream", context.peer())
        except Rejection as e:
            await _abort(context, e)
            raise AssertionError("unreachable: context.abort raises") from None

    async def admit_debug(self, context: Any, node: str | None = None) -> AgentIdentity | None:
        """Check a debugging RPC; ``node``: the node whose state it asks for (only
        the caller's own node is allowed in ``agent`` mode)."""
        if self.debug == "open":
            return None
        if self.debug == "off" or self.auth is None:
            metrics.AGENT_AUTH_REJECTED.labels("debug_disabled", "debug").inc()
            await _abort(context, Rejection(Reason.NOT_AGENT_POD, "debugging RPCs are disabled on this controller "
                                                                  "(--debug-rpcs off)"), code="PERMISSION_DENIED")
            return None
        try:
            return await self.auth.authorize(context.invocation_metadata(), node, "debug", context.peer())
        except Rejection as e:
            await _abort(context, e)
            raise AssertionError("unreachable: context.abort raises") from None


async def _abort(context: Any, e: Rejection, code: str | None = None) -> None:
    import grpc

    await context.abort(getattr(grpc.StatusCode, code or status_code_name(e.reason)), e.message)
