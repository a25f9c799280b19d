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
``selectors``, ``patch``, ``store`` (versioned objects and history), and
``faults`` are pure; ``watch``, ``server``, ``admin``, ``table`` and
``discovery`` shape HTTP; ``emulator`` is the lifecycle and ``main`` the
``stockade kube-emulator`` command.

Why not kmock (PyPI, by the author of kopf)?  kmock is a general HTTP mock
server with a DSL for scripting responses and asserting on requests, with
some Kubernetes awareness; it is young (pre-1.0, API still moving), adds
attrs/jsonpatch dependencies, and is built to run inside a pytest process.
We need a standalone process (the lab runs it in a network namespace) that
behaves like an apiserver by itself: a versioned store with a history
window and exact 410 semantics, bookmarks, selectors on watches, discovery
and OpenAPI enough for an unmodified kubectl, and fault injection over HTTP.
That is a stateful emulator rather than a scripted mock, and owning it in
about two thousand lines keeps its behaviour documented and testable here.

Not modelled: authentication and authorization (plain HTTP, no users),
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
