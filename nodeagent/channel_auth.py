"""The agent's side of the authenticated channel: verify the controller, prove the node.

* **TLS**: with ``--ca-file`` the agent opens a TLS channel and accepts only
  a controller certificate that chains to that bundle (the ConfigMap
  ``stockade-ca`` mounted by the DaemonSet, or cert-manager's ``ca.crt``)
  and names the host dialled, or ``--server-name`` (the lab dials an IP
  that is not in the certificate, say).  The bundle is re-read at every
  connect, so a rotated CA needs no agent restart.  Without ``--ca-file``
  (or with ``--insecure-grpc``) the channel is plaintext and a warning says
  so.
* **Token**: at every connect the agent re-reads ``--token-file`` (the
  kubelet-projected ServiceAccount token, audience ``stockade``, rotated
  by the kubelet long before it expires) and sends it as ``authorization:
  Bearer <token>`` metadata.  The agent never calls the Kubernetes API
  with it; only the controller's TokenReview looks at it.  A missing file
  sends no token (a controller with ``--auth none`` does not need one).

Not here: the stream protocol (``nodeagent.client``), flags
(``nodeagent.main``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

log = logging.getLogger("stockade.agent.channel")

DEFAULT_TOKEN_FILE = "/var/run/secrets/stockade/token"
DEFAULT_CA_FILE = "/etc/stockade/ca/ca.crt"


@dataclass
class ChannelSecurity:
    """``ca_file`` empty: plaintext.  ``server_name``: the name to verify the
    controller's certificate against instead of the dialled host.
    ``token_file`` empty: send no token."""

    ca_file: str = ""
    server_name: str = ""
    token_file: str = DEFAULT_TOKEN_FILE
    _warned: set[str] = field(default_factory=set, repr=False)

    @property
    def tls(self) -> bool:
        return bool(self.ca_file)

    def credentials(self) -> grpc.ChannelCredentials:
        """TLS credentials trusting only the CA bundle (read now)."""
        try:
            ca = Path(self.ca_file).read_bytes()
        except OSError as e:
            raise OSError(f"--ca-file {self.ca_file}: {e.strerror or e}") from None
        if b"-----BEGIN CERTIFICATE-----" not in ca:
            raise OSError(f"--ca-file {self.ca_file}: no PEM certificate in it")
        return grpc.ssl_channel_credentials(root_certificates=ca)

    def channel_options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.tls and self.server_name else []

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """``authorization: Bearer <token>`` from the token file as it is now, or nothing."""
        if not self.token_file:
            return ()
        try:
            token = Path(self.token_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            if self.tls:  # a plaintext agent talks to an --insecure-grpc controller, which needs no token
                self._warn_once("missing", f"no token sent: cannot read --token-file {self.token_file} "
                                           f"({e.strerror or e}); a controller with --auth tokenreview will "
                                           f"refuse us")
            return ()
        if not token:
            self._warn_once("empty", f"no token sent: --token-file {self.token_file} is empty")
            return ()
        self._warned.discard("missing")
        if not self.tls:
            self._warn_once("plaintext", "sending the agent token over a plaintext channel (no --ca-file)")
        return (("authorization", f"Bearer {token}"),)

    def _warn_once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", msg)

    def open(self, target: str, options: Sequence[tuple[str, Any]]) -> grpc.aio.Channel:
        """A channel to ``target``: TLS with our CA when ``ca_file`` is set, else plaintext."""
        opts = [*options, *self.channel_options()]
        if not self.tls:
            self._warn_once("insecure", "controller channel WITHOUT TLS (no --ca-file): the controller is not "
                                        "verified")
            return grpc.aio.insecure_channel(target, options=opts)
        return grpc.aio.secure_channel(target, self.credentials(), options=opts)
