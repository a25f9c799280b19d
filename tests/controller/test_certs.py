"""controller.certs: the CA and serving certificates, pure (clock passed in)."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509

from controller import certs

NOW = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ca() -> certs.KeyPair:
    return certs.new_ca(NOW)


def test_ca_is_a_ca_for_ten_years(ca: certs.KeyPair) -> None:
    i = certs.info(ca.cert_pem)
    assert i.is_ca and i.subject_cn == i.issuer_cn == "stockade-ca"
    assert i.not_before <= NOW <= i.not_after
    assert i.not_after - NOW == dt.timedelta(days=certs.CA_DAYS)
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    certs.load_pair(ca)  # key matches


def test_serving_cert_names_and_chain(ca: certs.KeyPair) -> None:
    dns, ips = certs.split_names(["lab.example", "198.19.0.250", "::1"])
    names = certs.service_dns_names("stockade-system") + dns
    pair = certs.new_serving_cert(ca, NOW, names, ips)
    i = certs.info(pair.cert_pem)
    assert i.dns_names == ("stockade-controller", "stockade-controller.stockade-system",
                           "stockade-controller.stockade-system.svc",
                           "stockade-controller.stockade-system.svc.cluster.local", "lab.example")
    assert i.ip_addresses == ("198.19.0.250", "::1")
    assert not i.is_ca and i.issuer_cn == "stockade-ca"
    assert certs.signed_by(pair.cert_pem, ca.cert_pem)
    assert certs.check_serving(pair, ca.cert_pem, NOW) == i
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]


def test_serving_cert_never_outlives_its_ca() -> None:
    short_ca = certs.new_ca(NOW, days=30)
    i = certs.info(certs.new_serving_cert(short_ca, NOW, ["x"]).cert_pem)
    assert i.not_after == certs.info(short_ca.cert_pem).not_after


def test_two_cas_do_not_vouch_for_each_other(ca: certs.KeyPair) -> None:
    other = certs.new_ca(NOW)
    pair = certs.new_serving_cert(other, NOW, ["x"])
    assert not certs.signed_by(pair.cert_pem, ca.cert_pem)
    assert certs.signed_by(pair.cert_pem, ca.cert_pem + other.cert_pem)  # a bundle of both


def test_chain_with_an_intermediate_in_the_cert_file(ca: certs.KeyPair) -> None:
    """cert-manager's tls.crt: leaf, then intermediates; ca.crt: the root."""
    # an intermediate CA signed by the root, built with the same primitives
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    root_cert, root_key = certs.load_pair(ca)
    ikey = ec.generate_private_key(ec.SECP256R1())
    iname = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "intermediate")])
    icert = (x509.CertificateBuilder().subject_name(iname).issuer_name(root_cert.subject)
             .public_key(ikey.public_key()).serial_number(7).not_valid_before(NOW - dt.timedelta(1))
             .not_valid_after(NOW + dt.timedelta(100))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(ikey.public_key()), critical=False)
             .sign(root_key, hashes.SHA256()))
    inter = certs.KeyPair(icert.public_bytes(serialization.Encoding.PEM), ikey.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    leaf = certs.new_serving_cert(inter, NOW, ["svc"])
    chain = certs.KeyPair(leaf.cert_pem + inter.cert_pem, leaf.key_pem)
    assert certs.check_serving(chain, ca.cert_pem, NOW).dns_names == ("svc",)
    assert not certs.signed_by(leaf.cert_pem, ca.cert_pem)  # the leaf alone does not reach the root


@pytest.mark.parametrize(("case", "message"), [
    pytest.param("mismatched-key", "does not match", id="mismatched-key"),
    pytest.param("not-yet-valid", "valid only from", id="not-yet-valid"),
    pytest.param("expired", "valid only from", id="expired"),
    pytest.param("other-ca", "not signed by any certificate", id="other-ca"),
    pytest.param("garbage-cert", "not PEM", id="garbage-cert"),
    pytest.param("garbage-key", "private key", id="garbage-key"),
])
def test_check_serving_rejects(ca: certs.KeyPair, case: str, message: str) -> None:
    good = certs.new_serving_cert(ca, NOW, ["svc"])
    bundle = ca.cert_pem
    when = NOW
    pair = good
    if case == "mismatched-key":
        pair = certs.KeyPair(good.cert_pem, certs.new_serving_cert(ca, NOW, ["svc"]).key_pem)
    elif case == "not-yet-valid":
        when = NOW - dt.timedelta(days=1)
    elif case == "expired":
        when = NOW + dt.timedelta(days=certs.SERVING_DAYS + 1)
    elif case == "other-ca":
        bundle = certs.new_ca(NOW).cert_pem
    elif case == "garbage-cert":
        pair = certs.KeyPair(b"hello", good.key_pem)
    elif case == "garbage-key":
        pair = certs.KeyPair(good.cert_pem, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(certs.CertError, match=message):
        certs.check_serving(pair, bundle, when)


@pytest.mark.parametrize(("names", "dns", "ips"), [
    pytest.param(["a.b", "A.B", "10.0.0.1", "[::1]"], ["a.b"], ["10.0.0.1", "::1"], id="dedupe-and-brackets"),
    pytest.param([], [], [], id="none"),
    pytest.param(["*.lab.local"], ["*.lab.local"], [], id="wildcard"),
])
def test_split_names(names: list[str], dns: list[str], ips: list[str]) -> None:
    got_dns, got_ips = certs.split_names(names)
    assert got_dns == dns and got_ips == [ipaddress.ip_address(i) for i in ips]


@pytest.mark.parametrize("bad", ["", "a..b", "under_score.x", "x" * 64])
def test_split_names_rejects(bad: str) -> None:
    with pytest.raises(certs.CertError):
        certs.split_names([bad])


def test_serving_cert_needs_a_name_and_a_ca(ca: certs.KeyPair) -> None:
    with pytest.raises(certs.CertError, match="at least one"):
        certs.new_serving_cert(ca, NOW, [])
    leaf = certs.new_serving_cert(ca, NOW, ["x"])
    with pytest.raises(certs.CertError, match="not a CA"):
        certs.new_serving_cert(leaf, NOW, ["y"])
