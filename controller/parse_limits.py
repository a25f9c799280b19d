"""How much the parser takes: size limits on hostile or enormous input.

What: the constants that bound what ``controller.parse`` accepts and how
much of an offending value it echoes (docs/reliability.md has the table
and the reasoning), plus the bounds of the parser's own caches (strings
checked outside the ``lru_cache`` tables, entries kept by the interning dicts).

Why its own module: every part of the parser (``parse_errors``,
``parse_text``, ``parse_selectors``, ``parse_objects``, ``parse_policy``)
reads these, and the reliability table points at one place; they are
re-exported by ``controller.parse``, the public entry point.

What not: no checks here; the modules that enforce a limit say where.
"""

from __future__ import annotations

ETCD_OBJECT_BYTES = 1_572_864
"""etcd's default request size limit (``--max-request-bytes``, 1.5 MiB).
No object the API server stores is larger, so the limits derived from it
below never refuse a policy a real cluster can hold; they only stop
objects no API server would send (a bug, a hand-made watch event, a fuzzer)
from costing the controller unbounded time and memory."""

MAX_POLICY_IPBLOCKS = ETCD_OBJECT_BYTES // 28
"""ipBlock peers in one policy (56,173).  The shortest ipBlock peer,
``{"ipBlock":{"cidr":"::/0"}},``, is 28 bytes of JSON, so a policy with
more cannot be stored.  Above it :func:`parse_policy` raises
:class:`PolicyInvalid` naming the list and the limit, before parsing any
entry of that list."""

MAX_POLICY_ENTRIES = ETCD_OBJECT_BYTES // 3
"""List entries in one policy, every list counted together (rules, peers,
ports, except CIDRs, match expressions, their values, policy types):
524,288.  The shortest JSON list entry (``"",`` or ``{},``) is 3 bytes.
Checked as each list is reached, before its entries are read."""

MAX_ERRORS = 100
"""Problems a :class:`PolicyInvalid` lists; the rest are counted in a last
``... and N more problems`` entry, so a policy with 50,000 bad entries
gives a readable report (log line, status page, ``stockade evaluate``)."""

MAX_ECHO = 80
"""Characters of an offending value (or map key) quoted in an error
message.  A longer value is shown cut, with its length
(``'xxxx...'... (1000000 characters)``): a 1 MB label value never comes
back in a message, a log line or the status page."""

MAX_LABEL_VALUE = 63
"""Longest label value the API server accepts (``IsValidLabelValue``); pods,
namespaces and nodes with a longer one are refused with :class:`ParseError`
(a cheap length check, not a full validation)."""

MAX_LABEL_KEY = 253 + 1 + 63
"""Longest label key the API server accepts: a 253-character DNS prefix,
``/``, a 63-character name."""

_CACHED_TEXT = 64  # strings longer than this are checked without the lru caches (no megabyte kept alive)
_INTERN_LIMIT = 1 << 16  # entries an interning dict (label maps, selectors) keeps before it is cleared
