"""Prometheus metrics of the controller's watch loop and writer task.

The metrics are module-level objects in prometheus-client's default
registry, the same registry the distributor and gRPC server register
theirs in, so ``/metrics`` (``controller.status_web``) serves everything by
rendering that one registry.  Module level also means a process (or a test
session) that starts several controllers registers each name once.

This module only declares metrics and one rendering helper; it does not
serve HTTP and does not decide when anything is counted.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Kinds label values: "Namespace", "Pod", "Node", "NetworkPolicy".

WATCH_EVENTS = Counter(
    "stockade_watch_events_total",
    "Watch and relist changes forwarded to the writer (after dropping no-ops), by kind and type.",
    ["kind", "type"],
)
WATCH_UNCHANGED = Counter(
    "stockade_watch_unchanged_total",
    "Watch events dropped at the door because the object's resourceVersion or projection did not change.",
    ["kind"],
)
WATCH_RESTARTS = Counter(
    "stockade_watch_restarts_total",
    "Watch streams reopened, by kind and reason (timeout, stall, closed, error).",
    ["kind", "reason"],
)
WATCH_RELISTS = Counter(
    "stockade_watch_relists_total",
    "Full lists after the first one (410 Gone or errors), by kind.",
    ["kind"],
)
WATCH_ERRORS = Counter(
    "stockade_watch_errors_total",
    "Errors of the list-and-watch loop, by kind and reason (http_5xx, http_4xx, bad_json, stall, connect, ...).",
    ["kind", "reason"],
)
WATCH_LISTED = Gauge(
    "stockade_watch_listed",
    "1 once this kind has been listed completely at least once.",
    ["kind"],
)
OBJECTS = Gauge("stockade_objects", "Objects cached by the watch loop, by kind.", ["kind"])

EVENT_TO_SEND = Histogram(
    "stockade_event_to_send_seconds",
    "From a watch event's arrival to the publishing of the node states it changed (no publish: not counted).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_SIZE = Histogram(
    "stockade_writer_batch_changes",
    "Changes applied per writer batch.",
    buckets=(1, 2, 5, 10, 50, 100, 500, 1000, 5000),
)
INVALID_POLICIES = Gauge("stockade_invalid_policies", "NetworkPolicies that failed validation and are not enforced.")
READY = Gauge("stockade_controller_ready", "1 once every kind has been listed and the first states were published.")


def render(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``registry`` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST

# The agent channel (controller.agent_auth).
AGENT_AUTH_REJECTED = Counter(
    "stockade_agent_auth_rejected_total",
    "Clients of the gRPC port turned away, by reason (no_token, unauthenticated, wrong_node, ...) and RPC kind "
    "(stream, debug).",
    ["reason", "rpc"],
)
AGENT_AUTH_ACCEPTED = Counter(
    "stockade_agent_auth_accepted_total",
    "Clients of the gRPC port admitted after the token and node check, by RPC kind (stream, debug).",
    ["rpc"],
)
TOKEN_REVIEWS = Counter(
    "stockade_token_reviews_total",
    "TokenReviews sent to the API server (cache misses), by result (authenticated, rejected, error).",
    ["result"],
)
TOKEN_REVIEW_CACHE_HITS = Counter(
    "stockade_token_review_cache_hits_total",
    "Agent identities answered from the short-lived cache instead of the API server.",
)
STREAMS_EXPIRED = Counter(
    "stockade_wire_streams_expired_total",
    "Agent streams the controller ended because their admission ran out (reason: token_expiry, max_age); "
    "the agents reconnect at once.",
    ["reason"],
)
