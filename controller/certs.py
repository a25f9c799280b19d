"""Certificates for the controller's gRPC port: a CA and serving certificates, pure.

The controller serves TLS on 7700 by default.  With no certificate
management in the cluster it makes its own, as Antrea's controller does: a
long-lived CA (kept in a Secret so every replica signs with the same one,
see ``controller.ca_store``) and, at every start, a fresh serving
certificate signed by it for the Service's DNS names plus any extra names
or IPs (the lab's 198.19.0.250, say).  The agents trust the CA bundle the
controller publishes in a ConfigMap, so any replica's certificate verifies.

Keys are ECDSA P-256: fast to generate (tests make dozens), accepted by
gRPC's BoringSSL and by grpcurl.  Validity: CA 10 years, serving
certificate 1 year (a restart renews it; there is no hot rotation).

Everything here is a function of its arguments: the clock is passed in
(``now``), nothing is read or written, no Kubernetes, no gRPC.  The only
side input is the randomness of key generation and serial numbers.  It does
not decide *where* certificates come from (``controller.serving_tls``) nor
store them (``controller.ca_store``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVICE_NAME = "stockade-controller"
CA_DAYS = 3650
SERVING_DAYS = 365
# Accept certificates whose notBefore lies a little in the future: replicas'
# clocks differ, and a serving cert made by one is checked by agents on
# other nodes.
BACKDATE = dt.timedelta(minutes=5)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CertError(ValueError):
    """Unusable certificate material (the message says what and why)."""


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What a certificate says, for logs, the status page and tests."""

    subject_cn: str
    issuer_cn: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    is_ca: bool
    serial: int


def service_dns_names(namespace: str, service: str = SERVICE_NAME) -> list[str]:
    """The names a client may use for the Service ``service`` in ``namespace``:
    short, namespaced, ``.svc`` and ``.svc.cluster.local``."""
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local"]


def split_names(names: Iterable[str]) -> tuple[list[str], list[IPAddress]]:
    """Extra subject names as given on the command line -> (DNS names, IPs);
    order kept, duplicates dropped.  Raise CertError for an empty or
    malformed name."""
    dns: list[str] = []
    ips: list[IPAddress] = []
    for raw in names:
        name = raw.strip()
        try:
            ip = ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            ip = None
        if ip is not None:
            if ip not in ips:
                ips.append(ip)
            continue
        labels = name.rstrip(".").split(".")
        if not name or any(not lbl or len(lbl) > 63 or not all(c.isalnum() or c in "-*" for c in lbl)
                           for lbl in labels):
            raise CertError(f"not a DNS name or IP address: {raw!r}")
        if name.lower() not in dns:
            dns.append(name.lower())
    return dns, ips


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "stockade"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def new_ca(now: dt.datetime, common_name: str = "stockade-ca", days: int = CA_DAYS) -> KeyPair:
    """A self-signed CA that may sign only end-entity certificates (pathlen 0)."""
    key = _key()
    pub = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def new_serving_cert(ca: KeyPair, now: dt.datetime, dns_names: Sequence[str],
                     ip_addresses: Sequence[IPAddress] = (), days: int = SERVING_DAYS,
                     common_name: str = SERVICE_NAME) -> KeyPair:
    """A server certificate signed by ``ca`` for ``dns_names`` and ``ip_addresses``
    (subjectAltName; clients ignore the CN).  Never valid beyond the CA."""
    if not dns_names and not ip_addresses:
        raise CertError("a serving certificate needs at least one DNS name or IP address")
    ca_cert, ca_key = load_pair(ca)
    if not is_ca(ca_cert):
        raise CertError("the signing certificate is not a CA")
    key = _key()
    pub = key.public_key()
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ip) for ip in ip_addresses]
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def load_pair(pair: KeyPair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Parse a pair and check that the key belongs to the certificate."""
    cert = load_cert(pair.cert_pem)
    try:
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise CertError(f"private key: not a usable unencrypted PEM key ({e})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"private key: expected an ECDSA key, got {type(key).__name__}")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise CertError("private key does not match the certificate")
    return cert, key


def load_cert(pem: bytes) -> x509.Certificate:
    """The first certificate of a PEM bundle."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise CertError(f"certificate: not PEM ({e})") from None


def load_bundle(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (at least one)."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise CertError(f"CA bundle: not PEM certificates ({e})") from None
    return certs


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def info(pem: bytes) -> CertInfo:
    cert = load_cert(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()

    def cn(name: x509.Name) -> str:
        attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else ""

    return CertInfo(cn(cert.subject), cn(cert.issuer), dns, ips, cert.not_valid_before_utc,
                    cert.not_valid_after_utc, is_ca(cert), cert.serial_number)


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if ca.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """True if the chain ``cert_pem`` (leaf first, intermediates after, as
    cert-manager writes ``tls.crt``) links up by signatures and its last
    certificate is one of, or is signed by one of, the bundle ``ca_pem``.
    Signatures only: names and validity are the TLS library's business."""
    chain = load_bundle(cert_pem)
    roots = load_bundle(ca_pem)
    if any(not _issued_by(child, parent) for child, parent in itertools.pairwise(chain)):
        return False
    top = chain[-1]
    return any(top == r or _issued_by(top, r) for r in roots)


def check_serving(pair: KeyPair, ca_pem: bytes, now: dt.datetime) -> CertInfo:
    """Check certificate material given from files: the key matches, the
    certificate is valid ``now`` and chains to the CA bundle.  Return its info."""
    load_pair(pair)
    i = info(pair.cert_pem)
    if now < i.not_before or now > i.not_after:
        raise CertError(f"certificate is valid only from {i.not_before:%Y-%m-%dT%H:%M:%SZ} "
                        f"to {i.not_after:%Y-%m-%dT%H:%M:%SZ}")
    if not signed_by(pair.cert_pem, ca_pem):
        raise CertError(f"certificate (issuer {i.issuer_cn!r}) is not signed by any certificate of the CA bundle")
    return i
