"""Kernel names for everything the compiler emits: ipsets and chains.

Every name is a pure function of a *content key* (a normalised selector
pair, an ipBlock, a named port, a policy key), hashed with sha256 and
written in hex, so every controller replica computes byte-identical
names and equal keys share one set.  Names stay inside Stockade's prefixes
and the kernel's limits (``stk...`` <= 31 characters for ipsets,
``STOCKADE-...`` <= 28 for chains); IPv4 and IPv6 sets carry the family
in the name (``stk4...`` / ``stk6...``) because the kernel has one ipset
namespace for both families.

This module only names things; it does not decide what a set holds.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from stockade.state import CHAIN_PREFIX, MAX_CHAIN_NAME, MAX_SET_NAME, SET_PREFIX, Family

HASH_CHARS = 16  # 64 bits of sha256: a collision needs ~2**32 names

# Fixed chains (per family).
FORWARD_CHAIN = "STOCKADE-FORWARD"
INPUT_CHAIN = "STOCKADE-INPUT"
EGRESS_CHAIN = "STOCKADE-EGRESS"
INGRESS_CHAIN = "STOCKADE-INGRESS"

# Set kinds: one letter after the family digit.
PEER = "p"  # pods selected by a (namespace scope, pod selector) pair, cluster-wide
NET = "n"  # one ipBlock: cidr members, except entries as nomatch
PORT = "q"  # (pod IP, proto:port) of a named port over a pod group
TARGET = "t"  # the node's own pods selected by a policy's podSelector


def content_hash(key: str) -> str:
    """The first ``HASH_CHARS`` hex digits of sha256(key), upper case."""
    return hashlib.sha256(key.encode()).hexdigest()[:HASH_CHARS].upper()


def fam_digit(family: Family) -> str:
    return "4" if family == "inet" else "6"


@lru_cache(maxsize=1 << 18)
def set_name(kind: str, family: Family, key: str) -> str:
    """``stk<4|6><kind>-<hash>``: 22 characters."""
    name = f"{SET_PREFIX}{fam_digit(family)}{kind}-{content_hash(key)}"
    assert len(name) <= MAX_SET_NAME
    return name


def isolated_set(direction: str, family: Family) -> str:
    """The node's pods isolated for ``direction`` ("ingress"/"egress")."""
    return f"{SET_PREFIX}{fam_digit(family)}-iso-{direction}"


def policy_chain(direction: str, policy_key: str) -> str:
    """``STOCKADE-I-<hash>`` / ``STOCKADE-E-<hash>``: 27 characters."""
    letter = "I" if direction == "ingress" else "E"
    name = f"{CHAIN_PREFIX}{letter}-{content_hash(policy_key)}"
    assert len(name) <= MAX_CHAIN_NAME
    return name
