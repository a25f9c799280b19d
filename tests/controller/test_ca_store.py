"""controller.ca_store / serving_tls against the API emulator: one CA for every
replica (first writer wins), the bundle published create-or-update, files mode checked."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from controller import ca_store, certs, serving_tls
from controller.settings import SecuritySettings

pytestmark = pytest.mark.timeout(30)

NS = "stockade-system"
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def ns(emu: Any) -> str:
    emu.store.create("namespaces", {"metadata": {"name": NS}})
    return NS


async def test_replicas_racing_agree_on_one_ca(emu: Any, api: Any, ns: str) -> None:
    made: list[certs.KeyPair] = []

    def make() -> certs.KeyPair:
        made.append(certs.new_ca(NOW))
        return made[-1]

    results = await asyncio.gather(*(ca_store.ensure_ca(api, ns, make) for _ in range(4)))
    cas = {pair.cert_pem for pair, _ in results}
    assert len(cas) == 1, "every replica must end up with the same CA"
    assert sum(created for _, created in results) == 1  # first writer wins
    secret = emu.store.get("secrets", "stockade-ca", ns)
    assert secret["type"] == "kubernetes.io/tls"
    assert ca_store.ca_from_secret(secret).cert_pem in cas
    again, created = await ca_store.ensure_ca(api, ns, make)  # a later start reads it
    assert again.cert_pem in cas and not created and len(made) == len(results)


async def test_bundle_create_unchanged_update(emu: Any, api: Any, ns: str) -> None:
    a, b = certs.new_ca(NOW), certs.new_ca(NOW)
    assert await ca_store.publish_bundle(api, ns, a.cert_pem) == "created"
    assert await ca_store.publish_bundle(api, ns, a.cert_pem) == "unchanged"
    rv = emu.store.get("configmaps", "stockade-ca", ns)["metadata"]["resourceVersion"]
    assert await ca_store.publish_bundle(api, ns, b.cert_pem) == "updated"
    cm = emu.store.get("configmaps", "stockade-ca", ns)
    assert cm["data"] == {"ca.crt": b.cert_pem.decode()} and cm["metadata"]["resourceVersion"] != rv


async def test_unusable_secret_is_reported_not_replaced(emu: Any, api: Any, ns: str) -> None:
    emu.store.create("secrets", {"metadata": {"name": "stockade-ca"}, "data": {"tls.crt": "bm9wZQ=="}}, ns)
    with pytest.raises(ca_store.CaStoreError, match=r"holds no usable CA.*delete it"):
        await ca_store.ensure_ca(api, ns, lambda: certs.new_ca(NOW))


async def test_missing_namespace_fails_the_start_with_the_object_named(api: Any) -> None:
    with pytest.raises(ca_store.CaStoreError, match="secret nowhere/stockade-ca: HTTP 404"):
        await ca_store.ensure_ca(api, "nowhere", lambda: certs.new_ca(NOW))


async def test_self_signed_serving_cert_names_and_bundle(emu: Any, api: Any, ns: str) -> None:
    s = SecuritySettings(namespace=ns, tls_extra_names=("198.19.0.250", "controller.lab"))
    tls = await serving_tls.prepare(s, api)
    assert tls is not None
    assert tls.info.dns_names == (*certs.service_dns_names(ns), "controller.lab")
    assert tls.info.ip_addresses == ("198.19.0.250",)
    bundle = emu.store.get("configmaps", "stockade-ca", ns)["data"]["ca.crt"].encode()
    assert bundle == tls.ca_pem and certs.signed_by(tls.serving.cert_pem, bundle)
    assert await serving_tls.prepare(SecuritySettings(tls_mode="insecure", auth="none", debug_rpcs="open"),
                                     api) is None


def _write(tmp: Path, chain: bytes, key: bytes, ca: bytes) -> tuple[str, str, str]:
    paths = (tmp / "tls.crt", tmp / "tls.key", tmp / "ca.crt")
    for p, data in zip(paths, (chain, key, ca), strict=True):
        p.write_bytes(data)
    return str(paths[0]), str(paths[1]), str(paths[2])


def test_files_mode_checks_the_material(tmp_path: Path) -> None:
    ca = certs.new_ca(NOW)
    leaf = certs.new_serving_cert(ca, NOW, ["stockade-controller.stockade-system.svc"])
    tls = serving_tls.from_files(*_write(tmp_path, leaf.cert_pem, leaf.key_pem, ca.cert_pem), NOW)
    assert tls.ca_pem == ca.cert_pem and tls.source.startswith("files (")
    with pytest.raises(RuntimeError, match="not signed by any certificate of the CA bundle"):
        serving_tls.from_files(*_write(tmp_path, leaf.cert_pem, leaf.key_pem, certs.new_ca(NOW).cert_pem), NOW)
    with pytest.raises(RuntimeError, match=r"--tls-key-file .*No such file"):
        serving_tls.from_files(str(tmp_path / "tls.crt"), str(tmp_path / "absent.key"), str(tmp_path / "ca.crt"),
                               NOW)


async def test_api_server_unreachable_is_a_clear_start_failure(api: Any, emu: Any, ns: str) -> None:
    await emu.stop()
    with pytest.raises(ca_store.CaStoreError, match="cannot reach the API server for the CA objects"):
        await ca_store.ensure_ca(api, ns, lambda: certs.new_ca(NOW))
