"""A Kubernetes API server emulator for tests, the lab and the demo.

No real kube-apiserver can run here, so Stockade carries its own.  It is
faithful on the wire for what Stockade and its tools use: the real
kubernetes-asyncio client and the real kubectl run against it.  It serves
list and watch with one global resourceVersion, a bounded history window
and the apiserver's 410 behaviour, bookmarks, selectors, CRUD with the
apiserver's Status errors, the three patch formats, discovery, and faults
on demand (cut watches, forced 410, delays, 5xx, HTML 502, stalls).

Layout (pure core, thin I/O shells):
``errors`` (Status bodies), ``resources`` (kinds and registry),
``selectors``, ``patch``, ``protobuf`` (kubectl's typed create bodies),
``store`` (versioned objects and history), ``discovery``, ``table``,
``tokens`` and ``faults`` are pure; ``watch``, ``server`` and ``admin`` are the HTTP
shell; ``emulator`` is the lifecycle and ``main`` the
``stockade kube-emulator`` command.

kubectl needs no extra flags: discovery falls back from the aggregated to
the legacy form, the OpenAPI v3 probe finds server-side field validation
(so ``--validate=false`` is not needed), client-side ``apply`` works
(create, strategic merge update, "unchanged"), and ``kubectl create
namespace|configmap|secret|serviceaccount`` send protobuf, which is decoded.
``apply --server-side`` and other typed ``create`` commands get a 415.

How kubernetes-asyncio's ``watch.Watch`` helper sees failures (pinned by
``tests/kubeemu/test_faults.py`` and ``test_client.py``):

- expired version: the stream is HTTP 200 with one ERROR event; the helper
  raises ``ApiException(status=410, reason="Expired: too old resource
  version: R (F)")`` with ``body=None``.  Without ``timeout_seconds`` it
  first reconnects once, silently, from its last seen version, and raises
  on the second 410; with ``timeout_seconds`` it raises at once.  A 410 on
  a *list* is an ordinary ``ApiException`` whose body is the Status JSON.
- JSON Status error (500/503/429 from ``fail_next``): one line with
  ``code`` but no ``type`` -> ``ApiException(status=code,
  reason="<Reason>: <message>")``, ``body=None``.
- non-JSON error body (HTML 502 from ``bad_gateway_next``): NOT raised.
  The helper streams with ``_preload_content=False``, which skips the
  status check, so each HTML line comes out as a ``str`` event; then the
  body ends (StopAsyncIteration with ``timeout_seconds``, a silent
  reconnect without).  Check ``isinstance(event, dict)`` or
  ``watch.resp.status`` before trusting events.
- aborted stream (``cut_watches()``): ``aiohttp.ClientPayloadError``
  propagates; the helper does not retry it.
- clean end (``timeoutSeconds``, ``cut_watches(clean=True)``, emulator
  shutdown): StopAsyncIteration with ``timeout_seconds``; without it, a
  silent reconnect from the last version (bookmarks advance it).
- stall: nothing arrives; only a client timeout (``_request_timeout``)
  ends the wait, and ``asyncio.TimeoutError`` is swallowed and turned into
  a silent reconnect when ``timeout_seconds`` is not given.
- BOOKMARK events keep ``object`` as the raw dict; ``watch.resource_version``
  is updated from them.

Why not kmock (PyPI, by the author of kopf)?  kmock is a general HTTP mock
server with a DSL for scripting responses and asserting on requests, with
some Kubernetes awareness; it is young (pre-1.0, API still moving), adds
attrs/jsonpatch dependencies, and is built to run inside a pytest process.
We need a standalone process (the lab runs it in a network namespace) that
behaves like an apiserver by itself: a versioned store with a history
window and exact 410 semantics, bookmarks, selectors on watches, discovery
and OpenAPI enough for an unmodified kubectl, and fault injection over HTTP.
That is a stateful emulator rather than a scripted mock, and owning it in
about 2,500 lines keeps its behaviour documented and testable here.

TokenReview is served (``tokens``): ``emu.issue_token(...)`` or ``POST
/_emulator/tokens`` mints pod-bound ServiceAccount tokens, reviewed as the
real server does (bound pod alive, audiences, expiry).

Not modelled: authentication and authorization of requests (plain HTTP, no
users),
admission and schema validation (NetworkPolicies are stored as given: the
controller must cope with invalid ones), graceful deletion and finalizers
(deletes are immediate), server-side apply, protobuf, multiple versions of a
group, pagination (``limit``/``continue`` are accepted and ignored).
"""

from stockade.kubeemu.emulator import KubeEmulator
from stockade.kubeemu.errors import ApiError
from stockade.kubeemu.faults import Faults
from stockade.kubeemu.store import Event, Store

__all__ = ["ApiError", "Event", "Faults", "KubeEmulator", "Store"]
