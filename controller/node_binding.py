"""Which node an agent runs on, proven by its token: the pure rules.

Anything in the cluster can reach the controller's gRPC port, so a client
must prove that it is the Stockade agent of the node it names in its
hello.  The proof is the agent's projected ServiceAccount token (audience
``stockade``, kubelet-minted, bound to the agent's pod, expiring), sent as
``authorization: Bearer <token>``.  The controller asks the API server
about it (TokenReview) and about the pod it is bound to; this module
judges the answers:

1. :func:`bearer_token`: the token from the call's metadata.
2. :func:`review_body` / :func:`pod_ref`: the TokenReview to send, and
   from its answer the pod the token is bound to.  It must be
   authenticated *for our audience*, be a ServiceAccount token of the
   agent's ServiceAccount in the controller's namespace, and be bound to a
   pod (``extra`` ``authentication.kubernetes.io/pod-name``/``pod-uid``,
   as the real API server reports bound tokens).
3. :func:`agent_identity`: that pod (read from the API) must still exist
   with the token's uid, carry the agent's label, run as the agent's
   ServiceAccount, and be scheduled on a node.
4. :func:`check_node`: the node the client claims must be that node.

Every failure is a :class:`Rejection` with a :class:`Reason` (the metric's
label) and a message for the client and the log.  :class:`ReviewCache`
keeps successful identities briefly (keyed by the token's SHA-256, never
the token, and never past the token's expiry) so reconnect storms do not
turn into TokenReview storms.  :func:`token_expiry` reads a token's
``exp`` claim without trusting it, only to schedule when to look again
(``controller.stream_lifetime``).

Pure: Kubernetes JSON in, verdicts out; the clock is injected.  Not here:
API calls, gRPC, metrics (``controller.agent_auth``).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

AUDIENCE = "stockade"
AGENT_SERVICE_ACCOUNT = "stockade-agent"
# deploy/base/agent.yaml labels the agent pods so; only pods with these
# labels count as agents.
AGENT_POD_LABELS: Mapping[str, str] = {"app.kubernetes.io/name": "stockade-agent"}
EXTRA = "authentication.kubernetes.io/"
SA_PREFIX = "system:serviceaccount:"
MAX_TOKEN_BYTES = 16 * 1024


class Reason(enum.StrEnum):
    """Why a client was turned away (the ``reason`` label of the metric)."""

    NO_TOKEN = "no_token"  # no authorization metadata
    BAD_HEADER = "bad_header"  # not "Bearer <token>"
    UNAUTHENTICATED = "unauthenticated"  # TokenReview: not a valid token (expired, forged, other audience, pod gone)
    WRONG_AUDIENCE = "wrong_audience"  # authenticated, but not for our audience
    NOT_SERVICE_ACCOUNT = "not_service_account"  # a user, not a ServiceAccount
    WRONG_NAMESPACE = "wrong_namespace"  # a ServiceAccount of another namespace
    WRONG_SERVICE_ACCOUNT = "wrong_service_account"  # another ServiceAccount of our namespace
    NOT_POD_BOUND = "not_pod_bound"  # a token not bound to a pod (a legacy or hand-made one)
    POD_GONE = "pod_gone"  # the bound pod no longer exists (or was recreated)
    NOT_AGENT_POD = "not_agent_pod"  # the pod is not a Stockade agent (labels, ServiceAccount)
    NOT_SCHEDULED = "not_scheduled"  # the pod has no node yet
    WRONG_NODE = "wrong_node"  # the pod runs on another node than the one claimed
    REVIEW_FAILED = "review_failed"  # the API server could not be asked (retryable)


# How each reason reaches the client: a gRPC status code name.
UNAUTHENTICATED_REASONS = frozenset({Reason.NO_TOKEN, Reason.BAD_HEADER, Reason.UNAUTHENTICATED,
                                     Reason.WRONG_AUDIENCE})


def status_code_name(reason: Reason) -> str:
    """``UNAUTHENTICATED`` (no valid credential), ``UNAVAILABLE`` (could not
    check: retry), or ``PERMISSION_DENIED`` (a valid credential that does
    not prove this node)."""
    if reason in UNAUTHENTICATED_REASONS:
        return "UNAUTHENTICATED"
    if reason is Reason.REVIEW_FAILED:
        return "UNAVAILABLE"
    return "PERMISSION_DENIED"


class Rejection(Exception):
    """A client that does not get in: ``reason`` for the metric, ``message`` for it and the log."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Expectation:
    """Who may connect: tokens for ``audience`` of ``namespace/service_account``
    bound to pods carrying ``pod_labels``."""

    namespace: str
    service_account: str = AGENT_SERVICE_ACCOUNT
    audience: str = AUDIENCE
    pod_labels: Mapping[str, str] = field(default_factory=lambda: dict(AGENT_POD_LABELS))


@dataclass(frozen=True, slots=True)
class PodRef:
    """The pod a reviewed token is bound to (``node_hint``: the node the API
    server put in the token, when it does: Kubernetes 1.30+)."""

    namespace: str
    name: str
    uid: str
    node_hint: str = ""


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """A proven agent: its pod and the node that pod runs on; ``expires``:
    the proving token's ``exp`` claim (Unix seconds, 0 unknown), for
    scheduling only."""

    namespace: str
    pod: str
    pod_uid: str
    node: str
    expires: float = 0.0

    def describe(self) -> str:
        return f"pod {self.namespace}/{self.pod} on node {self.node}"


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str:
    """The token of the ``authorization: Bearer <token>`` metadata entry."""
    values = [v for k, v in (metadata or ()) if k.lower() == "authorization"]
    if not values:
        raise Rejection(Reason.NO_TOKEN, "no credentials: send the agent's ServiceAccount token as "
                                         "'authorization: Bearer <token>'")
    raw = values[0]
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    scheme, _, token = text.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Rejection(Reason.BAD_HEADER, "authorization metadata must be 'Bearer <token>'")
    # ServiceAccount tokens are JWTs of a few KB: junk is refused without
    # costing the API server a TokenReview.
    if token.count(".") != 2 or len(token) > MAX_TOKEN_BYTES:
        raise Rejection(Reason.UNAUTHENTICATED, "not a ServiceAccount token (expected a JWT)")
    return token


def token_key(token: str) -> str:
    """What caches and logs may hold instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_expiry(token: str) -> float:
    """The ``exp`` claim of a JWT (Unix seconds), 0.0 when it has no readable
    one.  The signature is NOT checked: use it only to schedule when to look
    at the token again; whether the token is valid is the TokenReview's say."""
    parts = token.split(".")
    if len(parts) != 3:
        return 0.0
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):  # binascii.Error and JSONDecodeError are ValueErrors
        return 0.0
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp) or exp <= 0:
        return 0.0
    return float(exp)


def review_body(token: str, expect: Expectation) -> dict[str, Any]:
    """The TokenReview to POST to ``/apis/authentication.k8s.io/v1/tokenreviews``."""
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": [expect.audience]}}


def _one(extra: Mapping[str, Any], key: str) -> str:
    v = extra.get(EXTRA + key)
    if isinstance(v, list) and len(v) == 1 and isinstance(v[0], str):
        return v[0]
    return ""


def pod_ref(review: Mapping[str, Any], expect: Expectation) -> PodRef:
    """Judge a TokenReview answer (the whole object, or just its status)."""
    status = review.get("status", review) if isinstance(review.get("status"), Mapping) else review
    if status.get("authenticated") is not True:
        err = status.get("error") or "not authenticated"
        raise Rejection(Reason.UNAUTHENTICATED, f"token rejected by the API server: {err}")
    audiences = status.get("audiences") or []
    if expect.audience not in audiences:
        raise Rejection(Reason.WRONG_AUDIENCE, f"token is not valid for audience {expect.audience!r} "
                                               f"(valid for {list(audiences)})")
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    if not username.startswith(SA_PREFIX) or username.count(":") != 3:
        raise Rejection(Reason.NOT_SERVICE_ACCOUNT, f"{username or 'an anonymous user'} is not a ServiceAccount")
    _, _, ns, sa = username.split(":")
    if ns != expect.namespace:
        raise Rejection(Reason.WRONG_NAMESPACE, f"ServiceAccount {ns}/{sa} is not in namespace {expect.namespace}")
    if sa != expect.service_account:
        raise Rejection(Reason.WRONG_SERVICE_ACCOUNT,
                        f"ServiceAccount {ns}/{sa} is not the agent's ({expect.namespace}/{expect.service_account})")
    extra = user.get("extra") or {}
    name, uid = _one(extra, "pod-name"), _one(extra, "pod-uid")
    if not name or not uid:
        raise Rejection(Reason.NOT_POD_BOUND, f"token of {ns}/{sa} is not bound to a pod (use the projected token)")
    return PodRef(ns, name, uid, _one(extra, "node-name"))


def agent_identity(ref: PodRef, pod: Mapping[str, Any] | None, expect: Expectation) -> AgentIdentity:
    """Judge the bound pod as read from the API (None: 404)."""
    where = f"pod {ref.namespace}/{ref.name}"
    if pod is None:
        raise Rejection(Reason.POD_GONE, f"{where} the token is bound to does not exist")
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    if meta.get("uid") != ref.uid:
        raise Rejection(Reason.POD_GONE, f"{where} was recreated (uid {meta.get('uid')}, token's {ref.uid})")
    if meta.get("deletionTimestamp"):
        raise Rejection(Reason.POD_GONE, f"{where} is being deleted")
    labels = meta.get("labels") or {}
    missing = {k: v for k, v in expect.pod_labels.items() if labels.get(k) != v}
    if missing:
        want = ",".join(f"{k}={v}" for k, v in sorted(missing.items()))
        raise Rejection(Reason.NOT_AGENT_POD, f"{where} is not a Stockade agent (labels lack {want})")
    runs_as = spec.get("serviceAccountName") or "default"
    if runs_as != expect.service_account:
        raise Rejection(Reason.NOT_AGENT_POD, f"{where} runs as ServiceAccount {runs_as}, "
                                              f"not {expect.service_account}")
    node = spec.get("nodeName") or ""
    if not node:
        raise Rejection(Reason.NOT_SCHEDULED, f"{where} is not scheduled on a node")
    if ref.node_hint and ref.node_hint != node:
        raise Rejection(Reason.WRONG_NODE, f"{where} runs on {node} but its token names node {ref.node_hint}")
    return AgentIdentity(ref.namespace, ref.name, ref.uid, node)


def check_node(identity: AgentIdentity, claimed: str) -> None:
    """The node a client claims must be the one its pod runs on."""
    if claimed != identity.node:
        raise Rejection(Reason.WRONG_NODE, f"claims node {claimed!r} but is the agent {identity.describe()}")


class ReviewCache:
    """Proven identities by token hash, each kept ``ttl`` seconds, at most
    ``size`` of them (least recently used dropped first).  Only successes
    are cached: a rejected token is asked about again (it may be a pod that
    was not yet visible).  A deleted pod's token stays accepted for up to
    ``ttl``; keep it short.  An identity whose token expires sooner
    (``AgentIdentity.expires``) is kept only until then.  ``clock``:
    monotonic seconds; ``wall``: Unix seconds (to place ``expires``)."""

    def __init__(self, ttl: float, size: int, clock: Callable[[], float],
                 wall: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self.wall = wall
        # token hash -> (expiry on ``clock``, identity)
        self._items: OrderedDict[str, tuple[float, AgentIdentity]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> AgentIdentity | None:
        item = self._items.get(key)
        if item is None or item[0] <= self.clock():
            if item is not None:
                del self._items[key]
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item[1]

    def put(self, key: str, identity: AgentIdentity) -> None:
        if self.ttl <= 0 or self.size <= 0:
            return
        now = self.clock()
        until = now + self.ttl
        if identity.expires:
            until = min(until, now + identity.expires - self.wall())
        if until <= now:
            return
        self._items[key] = (until, identity)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
