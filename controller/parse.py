"""Kubernetes JSON -> ``controller.model`` records, validating policies.

What: ``parse_namespace``, ``parse_pod``, ``parse_node`` and
``parse_policy`` turn dicts shaped as the API server returns them (or as
``kubectl apply`` sends them) into the slim immutable records of
``controller.model``.  ``parse_policy`` validates the way the API server
does (``pkg/apis/networking/validation.ValidateNetworkPolicy`` plus the
label-selector and object-name checks it calls) and reports *every* problem
at once in :class:`PolicyInvalid`, each error prefixed with its field path
(``spec.ingress[0].from[1].ipBlock.except[0]: ...``).  Unknown fields are
errors too, as with ``kubectl``'s strict field validation: a typo such as
``ingres`` would otherwise silently turn a policy into deny-all.

Why one entry point: the controller's watches, ``stockade evaluate`` and
the lab all go through the same parser, so a policy means one thing
everywhere.  The work is done by its parts, one job each; import from
here, not from them:

* ``controller/parse_limits.py``: the size limits (and cache bounds);
* ``controller/parse_errors.py``: ``ParseError``, ``PolicyInvalid``,
  bounded quoting of offending values, the policy error collector;
* ``controller/parse_text.py``: cached string checks (label keys and
  values, names, port names) and canonical IP/CIDR text;
* ``controller/parse_selectors.py``: label selector validation, normal
  form and interning;
* ``controller/parse_objects.py``: pods, namespaces, nodes;
* ``controller/parse_policy.py``: NetworkPolicy validation and conversion.

Normal forms (so equal meaning gives equal records, which lets the compiler
share sets): selectors with ``matchLabels: null``, ``{}`` or absent are the
select-all selector; a peer with a namespace selector but no pod selector
gets the select-all pod selector; ``endPort == port`` is dropped; policy
types are the effective ones (given, or inferred: Ingress always, Egress iff
there are egress rules); IPs and CIDRs are in canonical text.  CIDRs follow
the API server's legacy parsing (host bits set, IPv4 leading zeros): 1.36's
StrictIPCIDRValidation rejects such values on create, but objects stored by
older API servers keep them and must still be enforced (host bits cleared).

Speed: the compiler's benchmark parses 150,000 pods and 75,000 policies,
so string checks are cached (``lru_cache``), label maps and selectors are
interned, and no per-character Python loops run.

Hostile or enormous input (docs/reliability.md): the only exceptions are
:class:`PolicyInvalid` and :class:`ParseError`; a policy larger than any
object etcd can store is refused (ipBlocks counted in one pass before any
rule is parsed, MAX_POLICY_IPBLOCKS; list entries as each list is reached,
MAX_POLICY_ENTRIES); messages quote offending values
cut to MAX_ECHO characters and list at most MAX_ERRORS problems.

What not: pods, namespaces and nodes are *not* validated beyond their shape
(the API server already did; odd-but-legal input is accepted), except
for the length of label keys and values.  Nothing here does I/O or keeps
state beyond the interning caches; this module itself holds no code,
only the public names.
"""

from __future__ import annotations

from controller.model import Namespace as Namespace
from controller.model import NetworkPolicy as NetworkPolicy
from controller.model import Node as Node
from controller.model import Pod as Pod
from controller.parse_errors import ParseError, PolicyInvalid
from controller.parse_limits import (
    ETCD_OBJECT_BYTES,
    MAX_ECHO,
    MAX_ERRORS,
    MAX_LABEL_KEY,
    MAX_LABEL_VALUE,
    MAX_POLICY_ENTRIES,
    MAX_POLICY_IPBLOCKS,
)
from controller.parse_objects import parse_namespace, parse_node, parse_pod
from controller.parse_policy import parse_policy, policy_key_of
from controller.parse_text import canonical_cidr, canonical_ip

__all__ = [
    "ETCD_OBJECT_BYTES",
    "MAX_ECHO",
    "MAX_ERRORS",
    "MAX_LABEL_KEY",
    "MAX_LABEL_VALUE",
    "MAX_POLICY_ENTRIES",
    "MAX_POLICY_IPBLOCKS",
    "ParseError",
    "PolicyInvalid",
    "canonical_cidr",
    "canonical_ip",
    "parse_namespace",
    "parse_node",
    "parse_pod",
    "parse_policy",
    "policy_key_of",
]
