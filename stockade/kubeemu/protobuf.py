"""Decoding the protobuf request bodies kubectl's typed commands send.

``kubectl create namespace|configmap|secret|serviceaccount`` post
``application/vnd.kubernetes.protobuf``: the ``k8s\\x00`` magic, then a
``runtime.Unknown`` envelope (typeMeta, raw) whose ``raw`` is the object's
protobuf encoding.  This module decodes the wire format and knows the field
numbers of those four kinds plus ObjectMeta, turning the body into the JSON
the rest of the emulator handles (empty scalars dropped, as Go's
``omitempty`` JSON would).  Responses stay JSON, which kubectl accepts.

Not here: encoding, or any other kind (those bodies get a 415 naming the
media types that work).
"""

from __future__ import annotations

import base64
from typing import Any

from stockade.kubeemu import errors
from stockade.kubeemu.errors import JSON

MAGIC = b"k8s\x00"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"

# A schema maps field number -> (JSON name, type, repeated).  Types: "string",
# "bytes" (base64 in JSON), "int", "bool", "map" (string->string), "bmap"
# (string->bytes), "time" (ignored: the server sets timestamps), or a nested schema.
Schema = dict[int, tuple[str, Any, bool]]

OWNER_REFERENCE: Schema = {
    1: ("kind", "string", False), 3: ("name", "string", False), 4: ("uid", "string", False),
    5: ("apiVersion", "string", False), 6: ("controller", "bool", False), 7: ("blockOwnerDeletion", "bool", False),
}
OBJECT_META: Schema = {
    1: ("name", "string", False), 2: ("generateName", "string", False), 3: ("namespace", "string", False),
    5: ("uid", "string", False), 6: ("resourceVersion", "string", False), 7: ("generation", "int", False),
    8: ("creationTimestamp", "time", False), 11: ("labels", "map", False), 12: ("annotations", "map", False),
    13: ("ownerReferences", OWNER_REFERENCE, True), 14: ("finalizers", "string", True),
}
OBJECT_REFERENCE: Schema = {
    1: ("kind", "string", False), 2: ("namespace", "string", False), 3: ("name", "string", False),
    4: ("uid", "string", False), 5: ("apiVersion", "string", False),
}
KINDS: dict[tuple[str, str], Schema] = {
    ("v1", "Namespace"): {
        1: ("metadata", OBJECT_META, False),
        2: ("spec", {1: ("finalizers", "string", True)}, False),
        3: ("status", {1: ("phase", "string", False)}, False),
    },
    ("v1", "ConfigMap"): {
        1: ("metadata", OBJECT_META, False), 2: ("data", "map", False), 3: ("binaryData", "bmap", False),
        4: ("immutable", "bool", False),
    },
    ("v1", "Secret"): {
        1: ("metadata", OBJECT_META, False), 2: ("data", "bmap", False), 3: ("type", "string", False),
        4: ("stringData", "map", False), 5: ("immutable", "bool", False),
    },
    ("v1", "ServiceAccount"): {
        1: ("metadata", OBJECT_META, False), 2: ("secrets", OBJECT_REFERENCE, True),
        3: ("imagePullSecrets", {1: ("name", "string", False)}, True),
        4: ("automountServiceAccountToken", "bool", False),
    },
}
ENVELOPE: Schema = {1: ("typeMeta", {1: ("apiVersion", "string", False), 2: ("kind", "string", False)}, False),
                    2: ("raw", "raw", False)}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs: varints as int, length-delimited as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            out.append((number, data[pos:pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _decode(data: bytes, schema: Schema) -> JSON:
    out: JSON = {}
    for number, raw in _fields(data):
        if number not in schema:
            continue
        name, kind, repeated = schema[number]
        value: Any
        if kind in ("map", "bmap"):
            assert isinstance(raw, bytes)
            entry = dict(_fields(raw))
            key = entry.get(1, b"")
            val = entry.get(2, b"")
            assert isinstance(key, bytes) and isinstance(val, bytes)
            text = base64.b64encode(val).decode() if kind == "bmap" else val.decode()
            out.setdefault(name, {})[key.decode()] = text
            continue
        if kind == "string":
            assert isinstance(raw, bytes)
            value = raw.decode()
        elif kind in ("bytes", "raw"):
            assert isinstance(raw, bytes)
            value = raw if kind == "raw" else base64.b64encode(raw).decode()
        elif kind == "int":
            assert isinstance(raw, int)
            value = raw
        elif kind == "bool":
            value = bool(raw)
        elif kind == "time":
            continue
        else:
            assert isinstance(raw, bytes)
            value = _decode(raw, kind)
        if repeated:
            out.setdefault(name, []).append(value)
        elif value not in ("", 0, False) or kind == "raw":
            out[name] = value
    return out


def decode_object(body: bytes) -> JSON:
    """The JSON form of a protobuf-encoded object of a supported kind; 415 otherwise."""
    if not body.startswith(MAGIC):
        raise errors.bad_request("protobuf body does not start with the k8s magic number")
    try:
        envelope = _decode(body[len(MAGIC):], ENVELOPE)
        type_meta = envelope.get("typeMeta", {})
        api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
        schema = KINDS.get((api_version, kind))
        if schema is None:
            raise errors.unsupported_media_type(f"{MEDIA_TYPE} for {kind or 'this kind'}")
        obj = _decode(envelope.get("raw", b""), schema)
    except (ValueError, UnicodeDecodeError, AssertionError) as exc:
        raise errors.bad_request(f"cannot decode protobuf body: {exc}") from None
    return {"apiVersion": api_version, "kind": kind, **obj}
