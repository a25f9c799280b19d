"""Policy cases: the file format, the address plan, and the result document.

What: the public entry point for everything both case runners (``stockade
evaluate`` and ``stockade lab run``) share, exactly as
``shared/cases/FORMAT.md`` (version 1) defines it.  The work is done by
its parts, one job each; import from here, not from them:

* ``stockade/case_format.py``: :func:`load` / :func:`load_each` read case files (a folder means its
  ``*.json``, sorted) into :class:`Case` values, checking every field; an
  unusable file raises :class:`CaseError` naming the file and the field.
* ``stockade/case_addresses.py``: :func:`plan_addresses` pins the address plan both runners use (below);
  :class:`AddressPlan` also allocates incrementally for steps.
* ``stockade/case_templates.py``: :func:`substitute` expands ``{{ip NS/POD}}``, ``{{ip external:NAME}}`` and
  ``{{prefix NS/POD N}}`` with any address lookup.
* ``stockade/case_world.py``: :class:`World` turns the case and each step action into Kubernetes object
  operations (:class:`ObjectOp`: kind, namespace, name, new object or
  deletion); :func:`stages` lays out a whole run up front, so every error
  surfaces before anything runs.
* ``stockade/case_results.py``: :func:`result_document` /
  :func:`write_result` write the result schema;
* ``stockade/case_values.py`` (the :class:`Case` dataclasses),
  ``stockade/case_fields.py`` (per-field checks) and
  ``stockade/case_errors.py`` (:class:`CaseError`, values quoted short).

Inputs that must not break anything (docs/reliability.md): a file over
MAX_CASE_BYTES is refused before it is read, JSON nested deeper than
MAX_NESTING is refused before any recursive step, and error messages quote
offending values cut to MAX_ECHO characters, so every bad file ends as a
:class:`CaseError` naming the file and the field, never another exception.

The address plan (the lab relies on it; do not change it casually):

* node ``i`` (0-based) is named ``node-i``, has underlay IP ``198.19.0.(i+1)``,
  pod CIDR ``198.18.i.0/24`` and bridge gateway ``198.18.i.1``;
* pods are numbered in case order (the ``pods`` list, then ``create-pod``
  actions in step order); pod number ``k`` without ``node`` goes to node
  ``k % nodes``;
* a pod gets the lowest free address ``198.18.<node>.2`` .. ``.254`` on its
  node (a deleted pod's address becomes free again); hostNetwork pods have
  their node's IP and take no pod address.

What not: no Kubernetes or network I/O, no policy validation (that is
``controller.parse``; an invalid policy is a legitimate case input).
This module itself holds no code, only the public names.
"""

from __future__ import annotations

from stockade.case_addresses import POD_NET, AddressPlan, gateway_ip, node_ip, node_name, plan_addresses, pod_cidr
from stockade.case_errors import MAX_ECHO, MAX_FIELD_TEXT, CaseError
from stockade.case_format import (
    MAX_CASE_BYTES,
    MAX_NESTING,
    MAX_NODES,
    case_files,
    load,
    load_each,
    load_file,
    parse_case,
)
from stockade.case_results import CaseResult, ProbeResult, result_document, write_result
from stockade.case_templates import substitute
from stockade.case_values import ACTION_KINDS, PROTOCOLS, Action, Case, Expect, External, PodDecl, PortDecl, Probe, Step
from stockade.case_world import ObjectOp, Stage, World, case_stages, namespace_object, node_object, pod_object, stages

__all__ = [
    "ACTION_KINDS",
    "MAX_CASE_BYTES",
    "MAX_ECHO",
    "MAX_FIELD_TEXT",
    "MAX_NESTING",
    "MAX_NODES",
    "POD_NET",
    "PROTOCOLS",
    "Action",
    "AddressPlan",
    "Case",
    "CaseError",
    "CaseResult",
    "Expect",
    "External",
    "ObjectOp",
    "PodDecl",
    "PortDecl",
    "Probe",
    "ProbeResult",
    "Stage",
    "Step",
    "World",
    "case_files",
    "case_stages",
    "gateway_ip",
    "load",
    "load_each",
    "load_file",
    "namespace_object",
    "node_ip",
    "node_name",
    "node_object",
    "parse_case",
    "plan_addresses",
    "pod_cidr",
    "pod_object",
    "result_document",
    "stages",
    "substitute",
    "write_result",
]
