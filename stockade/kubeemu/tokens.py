"""Bound ServiceAccount tokens and the TokenReview API, as the real API server does them.

Stockade's agents prove which node they run on with a projected
ServiceAccount token (audience ``stockade``) that the controller checks
with ``POST /apis/authentication.k8s.io/v1/tokenreviews``.  This module
mints such tokens and reviews them:

* :meth:`TokenAuthority.issue` makes a pod-bound token (what the kubelet
  projects, or ``kubectl create token SA --bound-object-kind Pod``): a
  JWT whose claims are those of the real server (``iss``, ``sub``,
  ``aud``, ``exp``, ``iat``, ``nbf``, ``jti`` and the ``kubernetes.io``
  claim with namespace, serviceaccount, pod and node names and uids).
  It refuses what the real TokenRequest refuses: an unknown
  ServiceAccount, an unknown pod, a pod running as another ServiceAccount.
* :meth:`TokenAuthority.review` answers a TokenReview ``spec`` with the
  ``status`` the real server gives: ``authenticated``, ``user``
  (``system:serviceaccount:NS:SA``, the ServiceAccount's uid, the three
  groups, and ``extra`` with ``authentication.kubernetes.io/pod-name``,
  ``pod-uid``, ``node-name``, ``node-uid`` and ``credential-id``) and
  ``audiences`` (the requested audiences the token is valid for); or
  ``authenticated`` absent, an empty ``user`` and an ``error`` for a token
  that is malformed, badly signed, not yet valid, expired, for other
  audiences, or whose ServiceAccount or pod is gone or was recreated (uid
  changed): bound tokens die with their pod.

Tokens are signed with HMAC-SHA256 (``alg: HS256``) under a key of the
authority; the real server uses RS256 with its service-account key.
Clients must treat tokens as opaque anyway, so nothing can tell.

Pure: the clock is injected and the store is only read.  Not here: HTTP
(``server``, ``admin``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from stockade.kubeemu import errors
from stockade.kubeemu.errors import JSON, ApiError
from stockade.kubeemu.store import Store

ISSUER = "https://kubernetes.default.svc.cluster.local"
API_AUDIENCES = (ISSUER,)  # what a token request or review without audiences means
EXTRA = "authentication.kubernetes.io/"
MAX_TTL = 2**32 // 2  # the real API allows up to 2^32 s; keep it finite and positive
MIN_TTL = 600  # the real TokenRequest's minimum expirationSeconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenAuthority:
    """Mints and reviews tokens for one emulator (one signing key).

    ``clock`` returns Unix seconds; ``min_ttl`` is the shortest lifetime a
    caller may ask for (600 s as in the real API; tests of expiry lower it).
    """

    def __init__(self, store: Store, clock: Callable[[], float] = time.time, key: bytes | None = None,
                 min_ttl: int = MIN_TTL) -> None:
        self.store = store
        self.clock = clock
        self.key = key if key is not None else secrets.token_bytes(32)
        self.min_ttl = min_ttl
        self.issued = 0
        self.reviews = 0

    # ---- minting --------------------------------------------------------------

    def issue(self, namespace: str, service_account: str, pod: str | None = None,
              audiences: Sequence[str] = API_AUDIENCES, ttl: int = 3600) -> tuple[str, int]:
        """A token for ``namespace/service_account``, bound to ``pod`` when
        given; returns (token, expiration as Unix seconds).  Raises
        :class:`ApiError` as the real TokenRequest would."""
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not self.min_ttl <= ttl <= MAX_TTL:
            raise errors.bad_request(f"spec.expirationSeconds: Invalid value: {ttl!r}: may not specify a duration "
                                     f"less than {self.min_ttl} seconds or longer than {MAX_TTL} seconds")
        auds = [a for a in audiences if isinstance(a, str) and a]
        if not auds:
            raise errors.bad_request("spec.audiences: Required value: at least one audience")
        sa = self.store.get("serviceaccounts", service_account, namespace)
        claim: JSON = {"namespace": namespace,
                       "serviceaccount": {"name": service_account, "uid": sa["metadata"]["uid"]}}
        if pod is not None:
            p = self.store.get("pods", pod, namespace)
            runs_as = (p.get("spec") or {}).get("serviceAccountName") or "default"
            if runs_as != service_account:
                raise ApiError(400, "BadRequest", f'the API object\'s service account "{runs_as}" does not match '
                                                  f'the requested service account "{service_account}"')
            claim["pod"] = {"name": pod, "uid": p["metadata"]["uid"]}
            node_name = (p.get("spec") or {}).get("nodeName") or ""
            if node_name:
                node_uid = ""
                try:
                    node_uid = self.store.get("nodes", node_name)["metadata"]["uid"]
                except ApiError:
                    pass  # a pod scheduled to a node object that does not exist (tests): name only
                claim["node"] = {"name": node_name, "uid": node_uid}
        now = int(self.clock())
        exp = now + ttl
        payload = {"aud": auds, "exp": exp, "iat": now, "iss": ISSUER, "jti": str(uuid.uuid4()),
                   "kubernetes.io": claim, "nbf": now, "sub": f"system:serviceaccount:{namespace}:{service_account}"}
        header = {"alg": "HS256", "kid": hashlib.sha256(self.key).hexdigest()[:16], "typ": "JWT"}
        signing_input = _b64(json.dumps(header, separators=(",", ":")).encode()) + "." + _b64(
            json.dumps(payload, separators=(",", ":")).encode())
        sig = hmac.new(self.key, signing_input.encode(), hashlib.sha256).digest()
        self.issued += 1
        return f"{signing_input}.{_b64(sig)}", exp

    # ---- reviewing ------------------------------------------------------------

    def review(self, spec: Any) -> JSON:
        """The ``status`` of a TokenReview with this ``spec``."""
        self.reviews += 1
        if not isinstance(spec, dict) or not isinstance(spec.get("token"), str) or not spec["token"]:
            raise errors.invalid("authentication.k8s.io", "tokenreviews", "TokenReview", "", "spec.token",
                                 "Required value")
        wanted = spec.get("audiences") or list(API_AUDIENCES)
        if not isinstance(wanted, list) or not all(isinstance(a, str) for a in wanted):
            raise errors.bad_request("spec.audiences: must be a list of strings")
        try:
            claims = self._verify(spec["token"])
            return self._authenticated(claims, wanted)
        except _Invalid as e:
            return {"user": {}, "error": f"[invalid bearer token, {e}]"}

    def _verify(self, token: str) -> JSON:
        parts = token.split(".")
        if len(parts) != 3:
            raise _Invalid("token is not a JWT")
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            sig = _unb64(parts[2])
        except (ValueError, UnicodeDecodeError):
            raise _Invalid("token is not a JWT") from None
        if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
            raise _Invalid("token is not signed by this server")
        expected = hmac.new(self.key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(sig, expected):
            raise _Invalid("square/go-jose: error in cryptographic primitive")
        if claims.get("iss") != ISSUER:
            raise _Invalid("token issuer is not trusted")
        now = self.clock()
        if not isinstance(claims.get("exp"), int) or now > claims["exp"]:
            raise _Invalid("service account token has expired")
        if isinstance(claims.get("nbf"), int) and now < claims["nbf"] - 60:
            raise _Invalid("service account token is not valid yet")
        return claims

    def _authenticated(self, claims: JSON, wanted: list[str]) -> JSON:
        token_auds = claims.get("aud") or []
        if isinstance(token_auds, str):
            token_auds = [token_auds]
        matched = [a for a in wanted if a in token_auds]
        if not matched:
            raise _Invalid(f"token audiences {json.dumps(token_auds)} is invalid for the target audiences "
                           f"{json.dumps(wanted)}")
        k8s = claims.get("kubernetes.io")
        if not isinstance(k8s, dict):
            raise _Invalid("token has no kubernetes.io claim")
        ns = str(k8s.get("namespace", ""))
        sa_claim = k8s.get("serviceaccount") or {}
        sa = self._live(ns, "serviceaccounts", sa_claim, "service account")
        extra: dict[str, list[str]] = {EXTRA + "credential-id": [f"JTI={claims.get('jti', '')}"]}
        pod_claim = k8s.get("pod")
        if pod_claim:
            self._live(ns, "pods", pod_claim, "pod")
            extra[EXTRA + "pod-name"] = [str(pod_claim["name"])]
            extra[EXTRA + "pod-uid"] = [str(pod_claim["uid"])]
        node_claim = k8s.get("node")
        if node_claim:
            extra[EXTRA + "node-name"] = [str(node_claim.get("name", ""))]
            if node_claim.get("uid"):
                extra[EXTRA + "node-uid"] = [str(node_claim["uid"])]
        user = {
            "username": f"system:serviceaccount:{ns}:{sa['metadata']['name']}",
            "uid": sa["metadata"]["uid"],
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
            "extra": extra,
        }
        return {"authenticated": True, "user": user, "audiences": matched}

    def _live(self, namespace: str, plural: str, ref: Any, what: str) -> JSON:
        """The object a token is bound to, which must still exist with the same uid."""
        if not isinstance(ref, dict) or not ref.get("name"):
            raise _Invalid(f"token has no {what} claim")
        try:
            obj = self.store.get(plural, str(ref["name"]), namespace)
        except ApiError:
            raise _Invalid(f'{plural} "{ref["name"]}" not found') from None
        if obj["metadata"].get("uid") != ref.get("uid"):
            raise _Invalid(f'{what} UID ({obj["metadata"].get("uid")}) does not match claim ({ref.get("uid")})')
        return obj


class _Invalid(Exception):
    """A token that does not authenticate (the message goes into status.error)."""


def token_review(spec: JSON, status: JSON) -> JSON:
    """The TokenReview object the server answers (spec echoed, as the real one does)."""
    return {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}
