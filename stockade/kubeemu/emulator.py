"""``KubeEmulator``: the store, the faults and the HTTP server, with a lifecycle.

    async with KubeEmulator(history=1000, bookmark_interval=0.2) as emu:
        emu.write_kubeconfig(tmp_path / "kubeconfig")
        emu.store.create("pods", {...}, namespace="default")
        emu.faults.fail_next(2)

Lifecycle in aiohttp's runner style: :meth:`start` sets up the runner and
binds the site (``emu.url`` is known after it, also with ``port=0``);
:meth:`stop` first ends every watch stream and stalled request, then cleans
the runner up within ``shutdown_timeout`` seconds.  The server is plain
HTTP without authentication; TLS would be an ``ssl_context`` handed to the
site.  :meth:`issue_token` mints pod-bound ServiceAccount tokens that the
TokenReview API (``tokens``) accepts, as the kubelet's projected tokens.

Not here: request handling (``server``), command line (``main``).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from types import TracebackType

from aiohttp import web

from stockade.kubeemu.faults import Faults
from stockade.kubeemu.server import Settings, build_app
from stockade.kubeemu.store import Store
from stockade.kubeemu.tokens import TokenAuthority
from stockade.kubeemu.watch import WatchHub

CONTEXT = "stockade-emulator"


class KubeEmulator:
    """A Kubernetes API emulator listening on ``host:port`` (port 0: any free port)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        history: int = 1000,
        bookmark_interval: float = 60.0,
        store: Store | None = None,
        faults: Faults | None = None,
        shutdown_timeout: float = 0.5,
    ) -> None:
        self.host = host
        self.port = port
        self.store = store if store is not None else Store(history=history)
        self.faults = faults if faults is not None else Faults()
        self.settings = Settings(bookmark_interval=bookmark_interval)
        self.shutdown_timeout = shutdown_timeout
        # Mints pod-bound ServiceAccount tokens and answers TokenReviews.
        self.tokens = TokenAuthority(self.store)
        self._runner: web.AppRunner | None = None
        self._hub: WatchHub | None = None

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("KubeEmulator is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def open_watches(self) -> int:
        """How many watch streams are open now (tests wait for a client to be watching)."""
        return len(self._hub.streams) if self._hub is not None else 0

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("KubeEmulator already started")
        self.settings.stopping = asyncio.Event()
        self._hub = WatchHub(self.store)
        self.faults.cut_listeners.append(self._hub.cut)
        app = build_app(self.store, self.faults, self._hub, self.settings, self.tokens)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._detach()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])

    async def stop(self) -> None:
        """End watches and stalls, then close the server; bounded by shutdown_timeout."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self.settings.stopping is not None:
            self.settings.stopping.set()
        if self._hub is not None:
            self._hub.shutdown()
        try:
            await asyncio.wait_for(runner.cleanup(), timeout=self.shutdown_timeout + 1.0)
        finally:
            self._detach()

    def _detach(self) -> None:
        if self._hub is not None:
            self._hub.detach()
            if self._hub.cut in self.faults.cut_listeners:
                self.faults.cut_listeners.remove(self._hub.cut)
            self._hub = None

    def issue_token(self, namespace: str, service_account: str, pod: str | None = None,
                    audiences: tuple[str, ...] | list[str] = ("stockade",), ttl: int = 3600) -> str:
        """A ServiceAccount token bound to ``pod`` (as the kubelet projects it),
        for ``audiences``, valid ``ttl`` seconds; TokenReview accepts it
        until it expires or the pod (or ServiceAccount) is deleted.  The
        ServiceAccount and pod must exist and the pod must run as it."""
        token, _ = self.tokens.issue(namespace, service_account, pod, audiences, ttl)
        return token

    async def __aenter__(self) -> KubeEmulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def kubeconfig(self, namespace: str = "default") -> dict[str, object]:
        """A kubeconfig for this server: one cluster, one user without credentials, one context."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CONTEXT, "cluster": {"server": self.url}}],
            "users": [{"name": CONTEXT, "user": {}}],
            "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}],
            "current-context": CONTEXT,
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | os.PathLike[str], namespace: str = "default") -> Path:
        """Write the kubeconfig (JSON, which is YAML too) atomically; return its path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(self.kubeconfig(namespace), indent=2) + "\n")
        os.chmod(tmp, 0o600)
        tmp.replace(target)
        return target
