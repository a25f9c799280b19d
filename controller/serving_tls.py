"""The controller's TLS material for gRPC 7700, by ``--tls-mode``.

* ``self-signed`` (default): the shared CA from Secret ``stockade-ca``
  (made by the first replica, ``controller.ca_store``), its bundle
  published in ConfigMap ``stockade-ca`` for the agents, and a serving
  certificate signed at every start for the Service's names
  (``stockade-controller``, ``.<ns>``, ``.<ns>.svc``,
  ``.<ns>.svc.cluster.local``) plus ``--tls-san`` names and IPs.
* ``files``: ``--tls-cert-file``/``--tls-key-file``/``--tls-ca-file`` as
  cert-manager writes them into a Secret (``tls.crt``, ``tls.key``,
  ``ca.crt``); checked at start (key matches, valid now, chains to the
  bundle) so a wrong mount fails the start, not every agent's handshake.
  Files are read once: a renewed certificate takes effect at the next
  restart.
* ``insecure``: no TLS (None); logged as a warning.

Not here: certificate construction (``certs``), the API objects
(``ca_store``), the gRPC server (which takes :func:`server_credentials`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller import ca_store, certs
from controller.settings import SecuritySettings

log = logging.getLogger("stockade.controller.tls")


@dataclass(frozen=True, slots=True)
class ServingTls:
    """What the gRPC server serves with, and where it came from."""

    serving: certs.KeyPair  # certificate chain (leaf first) and key
    ca_pem: bytes  # the bundle agents verify with
    source: str  # for the log: "self-signed (CA in secret ns/stockade-ca)", "files ..."
    info: certs.CertInfo


def _read(flag: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise RuntimeError(f"{flag} {path}: {e.strerror or e}") from None


def from_files(cert_file: str, key_file: str, ca_file: str, now: dt.datetime) -> ServingTls:
    pair = certs.KeyPair(_read("--tls-cert-file", cert_file), _read("--tls-key-file", key_file))
    ca_pem = _read("--tls-ca-file", ca_file)
    try:
        info = certs.check_serving(pair, ca_pem, now)
    except certs.CertError as e:
        raise RuntimeError(f"--tls-cert-file {cert_file}: {e}") from None
    return ServingTls(pair, ca_pem, f"files ({cert_file}, CA bundle {ca_file})", info)


async def self_signed(api_client: Any, s: SecuritySettings, now: dt.datetime) -> ServingTls:
    ca, _ = await ca_store.ensure_ca(api_client, s.namespace, lambda: certs.new_ca(now))
    outcome = await ca_store.publish_bundle(api_client, s.namespace, ca.cert_pem)
    log.info("CA bundle in configmap %s/%s: %s", s.namespace, ca_store.NAME, outcome)
    dns, ips = certs.split_names(s.tls_extra_names)
    names = certs.service_dns_names(s.namespace) + [d for d in dns if d not in certs.service_dns_names(s.namespace)]
    serving = certs.new_serving_cert(ca, now, names, ips)
    return ServingTls(serving, ca.cert_pem, f"self-signed (CA in secret {s.namespace}/{ca_store.NAME})",
                      certs.info(serving.cert_pem))


async def prepare(s: SecuritySettings, api_client: Any, now: dt.datetime | None = None) -> ServingTls | None:
    """The serving material for ``s.tls_mode`` (None: plaintext)."""
    now = now or dt.datetime.now(dt.UTC)
    if s.tls_mode == "insecure":
        log.warning("gRPC port WITHOUT TLS (--insecure-grpc): anyone on the network can read node states%s",
                    "" if s.auth == "tokenreview" else " and claim to be any node (--auth none)")
        return None
    if s.tls_mode == "files":
        tls = from_files(s.tls_cert_file, s.tls_key_file, s.tls_ca_file, now)
    else:
        tls = await self_signed(api_client, s, now)
    i = tls.info
    log.info("gRPC TLS from %s: certificate %r for %s, valid until %s", tls.source, i.subject_cn,
             ", ".join([*i.dns_names, *i.ip_addresses]) or "(no names)", f"{i.not_after:%Y-%m-%d}")
    return tls


def server_credentials(tls: ServingTls) -> Any:
    """gRPC server credentials (server-side TLS; clients authenticate with tokens, not certificates)."""
    import grpc

    return grpc.ssl_server_credentials([(tls.serving.key_pem, tls.serving.cert_pem)])
