"""Settings of the controller process, grouped by part, and its command line.

Every tunable of the controller lives here as a frozen dataclass field with
a comment saying what it means and why it has its default, so the watch
loop, the runtime and the shells take plain values and tests can shrink
timeouts without monkeypatching.  :func:`parse_args` turns
``stockade controller ...`` arguments into a :class:`Settings` and rejects
bad values with a message naming the flag.

This module does no I/O beyond reading the environment for the defaults of
``--replica-id`` and in-cluster detection; it does not load kubeconfigs.
"""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass, field
from typing import Literal

from controller.compile_policy import CompileSettings
from stockade.state import MAX_NFLOG_GROUP, StateError
from stockade.state_validation import check_limit, check_nflog_group

GRPC_PORT = 7700
DEFAULT_READ_TIMEOUT = 90.0
HTTP_PORT = 7701


class SettingsError(ValueError):
    """A command-line value that is not usable (the message names the flag)."""


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """The list-and-watch loop (``controller.watch``)."""

    # Server-side lifetime of one watch request (``timeoutSeconds``); each
    # stream gets a value drawn from [min, max] so that replicas and kinds
    # do not all reconnect at the same instant (client-go does the same).
    timeout_seconds_min: int = 240
    timeout_seconds_max: int = 360
    # No bytes for this long on an open watch stream (not even a bookmark)
    # means the stream stalled: it is dropped and resumed from the last
    # resourceVersion.  Longer than the API server's bookmark interval (~60s).
    read_timeout: float = DEFAULT_READ_TIMEOUT
    # Bound on opening a connection and on receiving one whole list page.
    connect_timeout: float = 10.0
    list_timeout: float = 60.0
    # Page size for lists (``limit``); continue tokens chain the pages.
    list_page_size: int = 500
    # Retry delays after errors: exponential from ``backoff_initial`` doubling
    # up to ``backoff_max``, each multiplied by a random factor in
    # [1 - backoff_jitter, 1] so that many clients do not retry in step.
    backoff_initial: float = 0.2
    backoff_max: float = 30.0
    backoff_jitter: float = 0.5
    # A watch stream that ends cleanly sooner than this without a single
    # event counts as an error (a server that closes at once must not make
    # us reconnect in a hot loop).
    min_stream_seconds: float = 1.0


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """The writer task (``controller.runtime``)."""

    # After the first message of a batch, wait this long for more before
    # draining the queue.  0: drain at once.  Bursts coalesce anyway: a
    # watcher reads every buffered line of a stream before the writer runs,
    # and whatever queues while the writer works is one batch next time.
    batch_window: float = 0.0
    # Upper bound on messages applied per batch, so one flood cannot delay
    # publishing forever.
    max_batch: int = 5000
    # Settle the heap (collect, then freeze) once ready and every this many
    # seconds when idle, and freeze what is new every heap_freeze_seconds, so
    # garbage collections do not walk the whole model (controller/heap.py).
    # 0: leave the collector alone / no plain freezes.
    heap_settle_seconds: float = 600.0
    heap_freeze_seconds: float = 10.0
    # New container objects between young collections (CPython: 700).
    gc_young_threshold: int = 20_000


@dataclass(frozen=True, slots=True)
class ShutdownSettings:
    """Bounds of each shutdown step (``controller.runtime.Controller.stop``)."""

    watches: float = 2.0  # cancel the watch tasks and close their streams
    writer: float = 2.0  # let the writer finish the batch it holds
    http: float = 3.0  # stop accepting, finish in-flight status requests
    grpc_grace: float = 3.0  # agents' streams get this long before cancellation


TlsMode = Literal["self-signed", "files", "insecure"]
AuthMode = Literal["none", "tokenreview"]
DebugAccess = Literal["agent", "open", "off"]
SERVICE_ACCOUNT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
DEFAULT_NAMESPACE = "stockade-system"


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """The agent channel (gRPC 7700): TLS and who may use it (docs/install-aks.md, "Channel security")."""

    # self-signed: the controller makes a CA (shared by replicas through the
    # Secret stockade-ca), publishes it in the ConfigMap stockade-ca and signs
    # its own serving certificate at every start (controller.serving_tls).
    # files: certificate, key and CA bundle from files (cert-manager style).
    # insecure: plaintext, for tests and debugging only (logged as a warning).
    tls_mode: TlsMode = "self-signed"
    tls_cert_file: str = ""  # PEM chain, leaf first (files mode)
    tls_key_file: str = ""
    tls_ca_file: str = ""  # the bundle agents verify with (checked against the certificate at start)
    # Extra subjectAltNames of the self-signed serving certificate, DNS names
    # or IPs (the lab reaches the controller at 198.19.0.250); the Service's
    # names are always in it.
    tls_extra_names: tuple[str, ...] = ()
    # Where the CA Secret/ConfigMap live, and the namespace agents must run in.
    namespace: str = DEFAULT_NAMESPACE
    # tokenreview: agents must prove their node with their projected
    # ServiceAccount token (controller.agent_auth); none: anyone may claim
    # any node (as before; the default only with --insecure-grpc).
    auth: AuthMode = "tokenreview"
    agent_service_account: str = "stockade-agent"
    audience: str = "stockade"
    # Debugging RPCs (ListNodes, GetNodeState, Explain): agent = a valid agent
    # token, GetNodeState of the caller's node only; open = anyone; off = no one.
    debug_rpcs: DebugAccess = "agent"
    # Proven tokens are trusted this long without asking the API server again
    # (also how long a deleted agent pod's token keeps working), at most this many.
    review_cache_seconds: float = 10.0
    review_cache_size: int = 4096
    # An agent stream is checked only when it opens, so it ends (UNAVAILABLE;
    # the agent reconnects at once, re-reads its token and gets InSync: no
    # kernel write) when the token it was admitted with expires (its JWT exp)
    # or max_stream_age seconds after admission, whichever comes first, up to
    # stream_age_jitter of that lifetime earlier (1,000 agents admitted
    # together do not all come back in the same second), and never sooner than
    # min_stream_age (clock skew must not make agents reconnect in a loop).
    # 0: no age limit (with --auth tokenreview the token's expiry still ends
    # streams).  See controller.stream_lifetime.
    max_stream_age: float = 3600.0
    min_stream_age: float = 10.0
    stream_age_jitter: float = 0.1


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``stockade controller`` needs."""

    kubeconfig: str | None = None  # None: in-cluster when KUBERNETES_SERVICE_HOST is set
    grpc_host: str = "0.0.0.0"
    grpc_port: int = GRPC_PORT
    http_host: str = "0.0.0.0"
    http_port: int = HTTP_PORT
    replica_id: str = field(default_factory=socket.gethostname)
    log_level: str = "INFO"
    watch: WatchSettings = field(default_factory=WatchSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    shutdown: ShutdownSettings = field(default_factory=ShutdownSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    # The rule layout (controller.compile_policy): the same in every replica;
    # checked at start against the agents' own limits (check_compile).
    compile: CompileSettings = field(default_factory=CompileSettings)


def parse_hostport(flag: str, text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); port 0 is
    allowed (the OS picks one, tests use it)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise SettingsError(f"{flag}: expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SettingsError(f"{flag}: port must be a number 0-65535, got {port!r} in {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stockade controller",
        description="Watch the cluster, compute every node's desired state, stream it to the agents.",
    )
    p.add_argument("--kubeconfig", metavar="PATH", default=None,
                   help="kubeconfig file (default: in-cluster config when KUBERNETES_SERVICE_HOST is set)")
    p.add_argument("--grpc-listen", metavar="HOST:PORT", default=f"0.0.0.0:{GRPC_PORT}",
                   help=f"where agents connect (default 0.0.0.0:{GRPC_PORT})")
    p.add_argument("--http-listen", metavar="HOST:PORT", default=f"0.0.0.0:{HTTP_PORT}",
                   help=f"status page, /metrics, /healthz, /readyz (default 0.0.0.0:{HTTP_PORT})")
    p.add_argument("--replica-id", metavar="ID", default=None, help="this replica's name (default: hostname)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--watch-read-timeout", type=float, default=DEFAULT_READ_TIMEOUT, metavar="SECONDS",
                   help="drop a watch stream silent for this long (default %(default)s)")
    comp = p.add_argument_group("compiled rules (the same in every replica; checked at start against the "
                                "limits the agents enforce)")
    comp.add_argument("--nflog-group", metavar="N", type=int, default=None,
                      help=f"log dropped new connections (rate-limited) to this NFLOG group, 0-{MAX_NFLOG_GROUP} "
                           "(default: no logging)")
    comp.add_argument("--nflog-limit", metavar="RATE", default=None,
                      help="rate limit of that logging, N/second, minute, hour or day (default "
                           f"{CompileSettings().nflog_limit}; needs --nflog-group)")
    sec = p.add_argument_group("channel security (gRPC 7700; see docs/install-aks.md, Channel security)")
    sec.add_argument("--tls-mode", choices=["self-signed", "files", "insecure"], default=None,
                     help="self-signed (default): own CA in Secret/ConfigMap stockade-ca; files: --tls-*-file "
                          "(implied by them); insecure: plaintext (same as --insecure-grpc)")
    sec.add_argument("--insecure-grpc", action="store_true",
                     help="plaintext gRPC, no agent authentication by default: tests and debugging only")
    sec.add_argument("--tls-cert-file", metavar="PATH", default="", help="serving certificate chain, PEM (files mode)")
    sec.add_argument("--tls-key-file", metavar="PATH", default="", help="its private key, PEM (files mode)")
    sec.add_argument("--tls-ca-file", metavar="PATH", default="",
                     help="the CA bundle the agents trust, PEM (files mode; checked against the certificate)")
    sec.add_argument("--tls-san", metavar="NAME_OR_IP", action="append", default=[],
                     help="extra DNS name or IP of the self-signed serving certificate; repeatable")
    sec.add_argument("--namespace", metavar="NS", default=None,
                     help="namespace of the CA objects and of the agents (default: this pod's namespace from "
                          f"{SERVICE_ACCOUNT_NAMESPACE_FILE}, else {DEFAULT_NAMESPACE})")
    sec.add_argument("--auth", choices=["none", "tokenreview"], default=None,
                     help="agent authentication: tokenreview (default with TLS) or none (default with "
                          "--insecure-grpc)")
    sec.add_argument("--agent-service-account", metavar="NAME", default="stockade-agent",
                     help="the agents' ServiceAccount (default %(default)s)")
    sec.add_argument("--debug-rpcs", choices=["agent", "open", "off"], default=None,
                     help="ListNodes/GetNodeState/Explain: agent = valid agent token, own node only (default with "
                          "--auth tokenreview); open = anyone (default with --auth none); off")
    sec.add_argument("--max-stream-age", type=float, default=SecuritySettings().max_stream_age, metavar="SECONDS",
                     help="end an agent stream this long after it was admitted, or when the agent's token "
                          "expires if sooner (jittered up to 10%% earlier); the agent reconnects at once and "
                          "re-proves its node, with no kernel write; 0 = no age limit (default %(default)g)")
    return p


def _read_namespace(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            ns = f.read().strip()
    except OSError:
        return None
    return ns or None


def parse_security(ns: argparse.Namespace, namespace_file: str = SERVICE_ACCOUNT_NAMESPACE_FILE) -> SecuritySettings:
    """The channel-security flags -> SecuritySettings (SettingsError names the flag)."""
    files = {"--tls-cert-file": ns.tls_cert_file, "--tls-key-file": ns.tls_key_file,
             "--tls-ca-file": ns.tls_ca_file}
    mode: TlsMode
    if ns.insecure_grpc:
        if ns.tls_mode not in (None, "insecure"):
            raise SettingsError(f"--insecure-grpc: contradicts --tls-mode {ns.tls_mode}")
        mode = "insecure"
    elif ns.tls_mode is not None:
        mode = ns.tls_mode
    else:
        mode = "files" if any(files.values()) else "self-signed"
    if mode == "files":
        for flag, path in files.items():
            if not path:
                raise SettingsError(f"{flag}: required with --tls-mode files")
            if not os.path.isfile(path):
                raise SettingsError(f"{flag}: no such file {path!r}")
    elif any(files.values()):
        flag = next(f for f, v in files.items() if v)
        raise SettingsError(f"{flag}: only used with --tls-mode files (the mode is {mode})")
    if ns.tls_san and mode != "self-signed":
        raise SettingsError(f"--tls-san: only used with --tls-mode self-signed (the mode is {mode})")
    try:
        from controller.certs import CertError, split_names

        split_names(ns.tls_san)
    except CertError as e:
        raise SettingsError(f"--tls-san: {e}") from None
    namespace = ns.namespace if ns.namespace is not None else (_read_namespace(namespace_file) or DEFAULT_NAMESPACE)
    if not namespace.strip():
        raise SettingsError("--namespace: must not be empty")
    auth: AuthMode = ns.auth if ns.auth is not None else ("none" if mode == "insecure" else "tokenreview")
    debug: DebugAccess = ns.debug_rpcs if ns.debug_rpcs is not None else ("agent" if auth == "tokenreview" else "open")
    if debug == "agent" and auth == "none":
        raise SettingsError("--debug-rpcs agent: needs --auth tokenreview")
    if not ns.agent_service_account.strip():
        raise SettingsError("--agent-service-account: must not be empty")
    floor = SecuritySettings().min_stream_age
    if not (ns.max_stream_age == 0 or floor <= ns.max_stream_age < float("inf")):
        raise SettingsError(f"--max-stream-age: must be 0 (no limit) or {floor:g} seconds or more, "
                            f"got {ns.max_stream_age:g}")
    return SecuritySettings(tls_mode=mode, tls_cert_file=ns.tls_cert_file, tls_key_file=ns.tls_key_file,
                            tls_ca_file=ns.tls_ca_file, tls_extra_names=tuple(ns.tls_san), namespace=namespace,
                            auth=auth, agent_service_account=ns.agent_service_account, debug_rpcs=debug,
                            max_stream_age=ns.max_stream_age)


def parse_compile(ns: argparse.Namespace) -> CompileSettings:
    """The compiled-rule flags -> CompileSettings, checked (:func:`check_compile`)."""
    if ns.nflog_limit is not None and ns.nflog_group is None:
        raise SettingsError("--nflog-limit: only used with --nflog-group")
    try:
        if ns.nflog_group is not None:
            check_nflog_group(ns.nflog_group, "--nflog-group")
        if ns.nflog_limit is not None:
            check_limit(ns.nflog_limit, "--nflog-limit")
    except StateError as e:
        raise SettingsError(str(e)) from None
    base = CompileSettings()
    cs = CompileSettings(nflog_group=ns.nflog_group,
                         nflog_limit=ns.nflog_limit if ns.nflog_limit is not None else base.nflog_limit)
    check_compile(cs)
    return cs


def check_compile(cs: CompileSettings) -> None:
    """Raise SettingsError when states compiled with ``cs`` would be refused
    by every agent: a policy-less node's state (every settings-made rule)
    run through the agents' own ``stockade.state_validation.validate``, so the limits
    are the agents' and exist once."""
    from controller.engine import check_settings

    try:
        check_settings(cs)
    except (StateError, ValueError) as e:
        raise SettingsError(f"compile settings {cs}: every agent would refuse the states: {e}") from None


def parse_args(argv: list[str], environ: dict[str, str] | None = None) -> Settings:
    """Raise SettingsError (or SystemExit from argparse for unknown flags)."""
    env = dict(os.environ) if environ is None else environ
    ns = build_parser().parse_args(argv)
    grpc_host, grpc_port = parse_hostport("--grpc-listen", ns.grpc_listen)
    http_host, http_port = parse_hostport("--http-listen", ns.http_listen)
    if ns.kubeconfig is None and not env.get("KUBERNETES_SERVICE_HOST"):
        raise SettingsError("--kubeconfig: required when not running in a cluster "
                            "(KUBERNETES_SERVICE_HOST is not set)")
    if ns.kubeconfig is not None and not os.path.isfile(ns.kubeconfig):
        raise SettingsError(f"--kubeconfig: no such file {ns.kubeconfig!r}")
    replica = ns.replica_id if ns.replica_id is not None else socket.gethostname()
    if not replica.strip():
        raise SettingsError("--replica-id: must not be empty")
    if ns.watch_read_timeout <= 0:
        raise SettingsError(f"--watch-read-timeout: must be positive, got {ns.watch_read_timeout}")
    return Settings(
        kubeconfig=ns.kubeconfig, grpc_host=grpc_host, grpc_port=grpc_port,
        http_host=http_host, http_port=http_port, replica_id=replica, log_level=ns.log_level,
        watch=WatchSettings(read_timeout=ns.watch_read_timeout), security=parse_security(ns),
        compile=parse_compile(ns),
    )
