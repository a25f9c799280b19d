"""Protobuf request bodies: the envelope and the four supported kinds, from hand-built bytes."""

from __future__ import annotations

import pytest

from stockade.kubeemu.errors import ApiError
from stockade.kubeemu.protobuf import MAGIC, decode_object


def varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def field(number: int, value: bytes | int | str) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def entry(number: int, key: str, value: bytes | str) -> bytes:
    return field(number, field(1, key) + field(2, value))


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return MAGIC + field(1, field(1, api_version) + field(2, kind)) + field(2, raw)


META = field(1, "x") + field(2, "") + field(3, "ns") + entry(11, "app", "web") + field(8, b"")


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        pytest.param("Namespace", field(1, field(1, "x")) + field(2, b"") + field(3, b""),
                     {"metadata": {"name": "x"}, "spec": {}, "status": {}}, id="namespace"),
        pytest.param("ConfigMap", field(1, META) + entry(2, "k", "v") + entry(3, "b", b"\x00\x01"),
                     {"metadata": {"name": "x", "namespace": "ns", "labels": {"app": "web"}}, "data": {"k": "v"},
                      "binaryData": {"b": "AAE="}}, id="configmap"),
        pytest.param("Secret", field(1, field(1, "s")) + entry(2, "x", b"y") + field(3, "Opaque") + field(5, 1),
                     {"metadata": {"name": "s"}, "data": {"x": "eQ=="}, "type": "Opaque", "immutable": True},
                     id="secret"),
        pytest.param("ServiceAccount", field(1, field(1, "sa") + field(14, "f1") + field(14, "f2"))
                     + field(3, field(1, "pull")) + field(4, 0),
                     {"metadata": {"name": "sa", "finalizers": ["f1", "f2"]}, "imagePullSecrets": [{"name": "pull"}]},
                     id="serviceaccount"),
    ],
)
def test_decode(kind: str, raw: bytes, expected: dict[str, object]) -> None:
    assert decode_object(envelope("v1", kind, raw)) == {"apiVersion": "v1", "kind": kind, **expected}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(b"{}", 400, id="no-magic"),
        pytest.param(envelope("apps/v1", "Deployment", b""), 415, id="unsupported-kind"),
        pytest.param(MAGIC + b"\x0a\xff", 400, id="truncated"),
    ],
)
def test_rejects(body: bytes, code: int) -> None:
    with pytest.raises(ApiError) as info:
        decode_object(body)
    assert info.value.code == code
