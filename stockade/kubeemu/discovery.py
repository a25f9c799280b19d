"""Discovery documents: what ``kubectl`` reads before it touches a resource.

Serves the legacy discovery forms, built from the :class:`Registry`:
``/version``, ``/api`` (APIVersions), ``/api/v1`` and
``/apis/<group>/<version>`` (APIResourceList, with ``/status``
subresources), ``/apis`` (APIGroupList) and ``/apis/<group>`` (APIGroup).

Aggregated discovery (``Accept: ...;as=APIGroupDiscoveryList``) is answered
with the legacy document and ``Content-Type: application/json``; client-go
looks at the response's content type and falls back to legacy discovery,
so kubectl works unchanged.

OpenAPI: ``/openapi/v3`` lists one document per group-version, and each
document holds only the PATCH operations with their
``x-kubernetes-group-version-kind`` and a ``fieldValidation`` parameter.
That is exactly what kubectl's validation probe looks for: finding it,
kubectl trusts the server to validate (sending ``fieldValidation=Strict``,
which the emulator accepts and ignores) and skips client-side schema
validation, so ``kubectl apply`` needs no ``--validate=false``.  The
documents carry no schemas, so kubectl computes strategic merge patches from
its compiled-in types.  ``/openapi/v2`` is 404, as on servers that turned it
off.

Not here: HTTP; this module returns JSON values only.
"""

from __future__ import annotations

import hashlib
import json

from stockade.kubeemu.errors import JSON
from stockade.kubeemu.resources import VERBS_STATUS, Registry, ResourceType

SERVER_VERSION: JSON = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions(server_address: str) -> JSON:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _resource_entry(rt: ResourceType) -> list[JSON]:
    entry: JSON = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    entry["storageVersionHash"] = hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).hexdigest()[:11]
    out = [entry]
    if rt.has_status:
        out.append({
            "name": f"{rt.plural}/status",
            "singularName": "",
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(VERBS_STATUS),
        })
    return out


def resource_list(registry: Registry, group: str, version: str) -> JSON | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    resources = [entry for rt in types for entry in _resource_entry(rt)]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _group(name: str, versions: list[str]) -> JSON:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def group_list(registry: Registry) -> JSON:
    groups = [_group(name, versions) for name, versions in registry.group_versions().items() if name]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(registry: Registry, name: str) -> JSON | None:
    versions = registry.group_versions().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


# ---- OpenAPI v3 (just enough for kubectl's field-validation probe) -----------------

def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def openapi_v3_root(registry: Registry) -> JSON:
    paths: JSON = {}
    for name, versions in registry.group_versions().items():
        for version in versions:
            doc = openapi_v3_document(registry, name, version)
            digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest().upper()[:128]
            path = _gv_path(name, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


def openapi_v3_document(registry: Registry, group: str, version: str) -> JSON:
    """A group-version's OpenAPI v3 document with one PATCH operation per kind."""
    paths: JSON = {}
    prefix = "/" + _gv_path(group, version)
    # Every kind gets the PATCH operation, create-only ones (TokenReview) too:
    # kubectl looks only at PATCH operations when probing for server-side
    # validation, and without /openapi/v2 it has no other way to validate.
    for rt in registry.in_group_version(group, version):
        scope = "/namespaces/{namespace}" if rt.namespaced else ""
        paths[f"{prefix}{scope}/{rt.plural}/{{name}}"] = {
            "patch": {
                "operationId": f"patch{rt.kind}",
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                    {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                ],
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}},
    }
