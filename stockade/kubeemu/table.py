"""Server-side printing: the ``meta.k8s.io/v1 Table`` kubectl asks ``get`` for.

kubectl sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...``
and prints the columns the server chose.  The emulator prints NAME and AGE
for every kind, plus STATUS, IP and NODE for pods and STATUS for
namespaces, enough for humans and scripts in the lab.

Not here: the real printers' per-kind columns; ``-o wide`` extras beyond
the pod ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stockade.kubeemu.errors import JSON
from stockade.kubeemu.resources import ResourceType


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def _age(created: str | None, now: datetime) -> str:
    if not created:
        return "<unknown>"
    try:
        then = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=now.tzinfo)
    except ValueError:
        return "<unknown>"
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _column(name: str, priority: int = 0, fmt: str = "") -> JSON:
    return {"name": name, "type": "string", "format": fmt, "description": name, "priority": priority}


def table(rt: ResourceType, items: list[JSON], resource_version: str, now: datetime) -> JSON:
    columns = [_column("Name", fmt="name")]
    if rt.key == ("", "pods"):
        columns += [_column("Status"), _column("IP", 1), _column("Node", 1)]
    elif rt.key == ("", "namespaces"):
        columns += [_column("Status")]
    columns.append(_column("Age"))
    rows = []
    for obj in items:
        meta: dict[str, Any] = obj.get("metadata") or {}
        status: dict[str, Any] = obj.get("status") or {}
        cells: list[Any] = [meta.get("name", "")]
        if rt.key == ("", "pods"):
            cells += [status.get("phase", ""), status.get("podIP", "<none>"), (obj.get("spec") or {}).get("nodeName", "<none>")]
        elif rt.key == ("", "namespaces"):
            cells += [status.get("phase", "")]
        cells.append(_age(meta.get("creationTimestamp"), now))
        rows.append({
            "cells": cells,
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta},
        })
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    }
