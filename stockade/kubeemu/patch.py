"""The three patch formats of PATCH requests, as pure functions on JSON values.

- ``application/merge-patch+json``: RFC 7386 (null deletes, objects merge,
  everything else replaces).
- ``application/strategic-merge-patch+json``: a merge patch that also merges
  lists of objects by their *merge key* (containers by ``name``, ports by
  ``containerPort``/``port`` ...), unions ``finalizers``, and honours the
  directives kubectl's client-side apply sends: ``$patch: replace|delete|merge``
  in maps and list items, ``$retainKeys``, ``$setElementOrder/<field>`` and
  ``$deleteFromPrimitiveList/<field>``.  The merge keys come from a field-name
  table instead of Go struct tags; for the kinds the emulator serves the
  table agrees with the real ones.
- ``application/json-patch+json``: RFC 6902 (add, remove, replace, move,
  copy, test).

Not here: server-side apply (``application/apply-patch+yaml``), which has
managed-fields semantics the emulator does not model.
"""

from __future__ import annotations

import copy
from typing import Any

from stockade.kubeemu.errors import ApiError, bad_request

# Field name -> candidate merge keys, first one present in the items wins.
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "env": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "ports": ("containerPort", "port"),
    "conditions": ("type",),
    "addresses": ("type",),
    "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey",),
    "resourceClaims": ("name",),
}
# Lists of scalars merged as sets.
UNION_LISTS = frozenset({"finalizers"})
# Maps whose Go field has patchStrategy "replace": a patch replaces them whole.
# Keyed by the store key (group, plural); values are paths from the object root.
REPLACE_PATHS: dict[tuple[str, str], frozenset[tuple[str, ...]]] = {
    ("policy", "poddisruptionbudgets"): frozenset({("spec", "selector")}),
}

_DELETE = object()  # sentinel: a "$patch: delete" map removes itself


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _strip(value: Any) -> Any:
    """Drop strategic directives from a value that is taken as-is."""
    if isinstance(value, dict):
        return {
            k: _strip(v)
            for k, v in value.items()
            if not k.startswith("$") and v is not None
        }
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and set(v) == {"$patch"})]
    return value


def strategic_merge_patch(target: Any, patch: Any, replace: frozenset[tuple[str, ...]] = frozenset()) -> Any:
    """Strategic merge patch of ``target`` (not modified) by ``patch``; maps at ``replace`` paths are replaced."""
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    out = _merge_map(target if isinstance(target, dict) else {}, patch, (), replace)
    return {} if out is _DELETE else out


def _merge_map(
    original: dict[str, Any],
    patch: dict[str, Any],
    path: tuple[str, ...] = (),
    replace: frozenset[tuple[str, ...]] = frozenset(),
) -> Any:
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip(patch)
    if directive == "delete":
        return _DELETE
    if directive not in (None, "merge"):
        raise bad_request(f"unknown patch type {directive!r} in $patch directive")
    result = copy.deepcopy(original)
    retain = patch.get("$retainKeys")
    if retain is not None:
        if not isinstance(retain, list):
            raise bad_request("$retainKeys must be a list of field names")
        result = {k: v for k, v in result.items() if k in retain}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list) and isinstance(value, list):
                result[name] = [item for item in result[name] if item not in value]
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and (*path, key) in replace:
            result[key] = _strip(value)
        elif isinstance(value, dict):
            current = result.get(key)
            merged = _merge_map(current if isinstance(current, dict) else {}, value, (*path, key), replace)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = value
    for key, order in patch.items():
        if key.startswith("$setElementOrder/") and isinstance(order, list):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = _reorder(name, result[name], order)
    return result


def _merge_key(name: str, items: list[Any]) -> str | None:
    dicts = [item for item in items if isinstance(item, dict)]
    if not dicts or len(dicts) != len(items):
        return None
    for candidate in MERGE_KEYS.get(name, ()):
        if all(candidate in item for item in dicts):
            return candidate
    return None


def _merge_list(name: str, original: Any, patch: list[Any]) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [_strip(item) for item in patch if not (isinstance(item, dict) and item.get("$patch") == "replace")]
    current = original if isinstance(original, list) else []
    if name in UNION_LISTS and all(not isinstance(item, (dict, list)) for item in patch):
        return copy.deepcopy(current) + [item for item in patch if item not in current]
    key = _merge_key(name, patch)
    if key is None or (current and _merge_key(name, current) != key):
        return [_strip(item) for item in patch]
    result = copy.deepcopy(current)
    for item in patch:
        index = next((i for i, old in enumerate(result) if old.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            result = [old for old in result if old.get(key) != item[key]]
        elif index is None:
            result.append(_strip(item))
        else:
            merged = _merge_map(result[index], item)
            if merged is _DELETE:
                del result[index]
            else:
                result[index] = merged
    return result


def _reorder(name: str, items: list[Any], order: list[Any]) -> list[Any]:
    key = _merge_key(name, order) if order and isinstance(order[0], dict) else None
    ids = [entry.get(key) if key else entry for entry in order]

    def rank(item: Any) -> int:
        ident = item.get(key) if key and isinstance(item, dict) else item
        return ids.index(ident) if ident in ids else len(ids)

    return sorted(items, key=rank)


# ---- RFC 6902 -------------------------------------------------------------

def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _patch_error(f"invalid JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _patch_error(message: str) -> ApiError:
    return ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {message}")


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    cur = doc
    for part in parts[:-1]:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise _patch_error(f"path element {part!r} does not exist")
    return cur, parts[-1]


def _get(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return doc
    parent, last = _parent(doc, parts)
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise _patch_error(f"path element {last!r} does not exist")


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent, last = _parent(doc, parts)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _patch_error(f"array index {last!r} out of range")
    else:
        raise _patch_error("cannot add to a scalar")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise _patch_error("cannot remove the whole document")
    _get(doc, parts)
    parent, last = _parent(doc, parts)
    if isinstance(parent, dict):
        del parent[last]
    else:
        del parent[int(last)]
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a JSON array of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _patch_error(f"invalid operation {op!r}: needs op and path")
        parts = _pointer(op["path"])
        kind = op["op"]
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, parts)
        elif kind == "replace":
            _get(doc, parts)
            doc = _add(_remove(doc, parts) if parts else doc, parts, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = copy.deepcopy(_get(doc, source))
            if kind == "move":
                doc = _remove(doc, source)
            doc = _add(doc, parts, value)
        elif kind == "test":
            if _get(doc, parts) != op.get("value"):
                raise _patch_error(f"test operation failed at {op['path']!r}")
        else:
            raise _patch_error(f"unknown operation {kind!r}")
    return doc
