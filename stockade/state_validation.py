"""What an agent checks before it accepts a state: :func:`validate`.

Everything the agent renders into restore input is checked here, so a
state that passes never makes ``ipset restore`` or ``iptables-restore``
fail half-way.  The limits themselves (name lengths, the kernel's limits
on rule values) are part of the contract and live in ``stockade.state``;
the controller checks its own compile settings with the same functions
(:func:`check_limit`, :func:`check_nflog_group`), so there is one copy of
each number.  Pure: no I/O.
"""

from __future__ import annotations

import re

from stockade.state import (
    ACTIONS,
    BUILTIN_CHAINS,
    CHAIN_PREFIX,
    CTSTATES,
    FAMILIES,
    MAX_CHAIN_NAME,
    MAX_COMMENT,
    MAX_IFACE,
    MAX_NFLOG_GROUP,
    MAX_NFLOG_PREFIX,
    MAX_SET_NAME,
    PROTOS,
    SET_PREFIX,
    SET_TYPES,
    SHORT,
    Family,
    IPSet,
    NodeState,
    Rule,
    StateError,
    short,
)

# Set and chain names: what the compiler's content-hash names use
# (controller.naming); no whitespace or quotes, so restore input never
# needs to quote them.
_NAME = re.compile(r"[A-Za-z0-9_.:-]+")
# Free-text rule values (comment, NFLOG prefix...): printable ASCII, so a
# restore line stays one line and the length limits count bytes.
_PRINTABLE = re.compile(r"[ -~]*")
# Interface names: printable ASCII without blanks, '/', quotes or
# backslashes (rendered bare), possibly ending in iptables' '+' wildcard.
_IFACE = re.compile(r"[^\x00- !/\"'\\\x7f-\U0010ffff]+")
# ``N/unit``, unit a lower-case prefix of second/minute/hour/day (what
# iptables accepts and ``stockade.state._canonical_limit`` maps to iptables-save's spelling).
_LIMIT = re.compile(r"([1-9][0-9]{0,9})/(s(?:e(?:c(?:o(?:n(?:d)?)?)?)?)?|m(?:i(?:n(?:u(?:t(?:e)?)?)?)?)?|h(?:o(?:u(?:r)?)?)?|d(?:a(?:y)?)?)")
_LIMIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
XT_LIMIT_SCALE = 10000  # xt_limit: a rate above 10000/second (scaled per unit) is "too fast"


def validate(state: NodeState) -> None:
    """Raise StateError naming the first thing that is wrong: a name outside
    Stockade's prefix, too long or with characters outside [A-Za-z0-9_.:-],
    an unknown set type/family/protocol/action, a rule naming a set or
    chain that does not exist, a set used with the wrong family, a rule
    value the kernel would refuse (see :func:`_check_values`), a hook
    position below 1.  Member syntax is checked by :func:`check_member`.

    Everything the agent renders into restore input is checked here, so
    a state that passes never makes ``ipset restore`` or
    ``iptables-restore`` fail half-way (after the set phase wrote)."""
    for name, s in state.sets.items():
        where = f"sets[{short(name)}]"
        _check_name(where, name, s.name, SET_PREFIX, MAX_SET_NAME)
        if s.type not in SET_TYPES:
            raise StateError(f"{where}.type: unknown set type {short(s.type)}")
        if s.family not in FAMILIES:
            raise StateError(f"{where}.family: unknown family {short(s.family)}")
        if s.nomatch and s.type != "hash:net":
            raise StateError(f"{where}.nomatch: only hash:net sets take nomatch members")
        for m in s.members:
            check_member(s, m, f"{where}.members")
        for m in s.nomatch:
            check_member(s, m, f"{where}.nomatch")
    for fam in FAMILIES:
        fs = state.family(fam)
        for cname, c in fs.chains.items():
            where = f"{fam}.chains[{short(cname)}]"
            _check_name(where, cname, c.name, CHAIN_PREFIX, MAX_CHAIN_NAME)
            for i, r in enumerate(c.rules):
                _check_rule(state, fam, r, f"{where}.rules[{i}]")
        for i, h in enumerate(fs.hooks):
            if h.builtin not in BUILTIN_CHAINS:
                raise StateError(f"{fam}.hooks[{i}].builtin: unknown chain {short(h.builtin)}")
            if h.target not in fs.chains:
                raise StateError(f"{fam}.hooks[{i}].target: no chain {short(h.target)}")
            if not (isinstance(h.position, int) and h.position >= 1):
                raise StateError(f"{fam}.hooks[{i}].position: {short(h.position)} is not a position (1, 2, ...)")


def _check_name(where: str, key: str, name: str, prefix: str, limit: int) -> None:
    """A set's or chain's name: the same as its key, Stockade's prefix, at
    most ``limit`` characters, only [A-Za-z0-9_.:-]."""
    if name != key:
        raise StateError(f"{where}.name: {short(name)} differs from its key")
    if not key.startswith(prefix) or len(key) > limit:
        raise StateError(f"{where}.name: must start with {prefix!r} and be at most {limit} characters")
    if not _NAME.fullmatch(key):
        raise StateError(f"{where}.name: only letters, digits and _ . : - are allowed")


def _check_rule(state: NodeState, fam: Family, r: Rule, where: str) -> None:
    if r.action not in ACTIONS:
        raise StateError(f"{where}.action: unknown action {short(r.action)}")
    if r.action == "JUMP" and r.target not in state.family(fam).chains:
        raise StateError(f"{where}.target: no chain {short(r.target)}")
    if r.action == "MARK" and r.set_mark is None:
        raise StateError(f"{where}.set_mark: MARK needs a mark")
    if r.proto is not None and r.proto not in PROTOS:
        raise StateError(f"{where}.proto: unknown protocol {short(r.proto)}")
    if r.dport is not None:
        if r.proto is None:
            raise StateError(f"{where}.dport: a port needs a protocol")
        lo, hi = r.dport
        if not (1 <= lo <= hi <= 65535):
            raise StateError(f"{where}.dport: bad range {lo}:{hi}")
    for sm in r.sets:
        s = state.sets.get(sm.set)
        if s is None:
            raise StateError(f"{where}.sets: no set {short(sm.set)}")
        if s.family != fam:
            raise StateError(f"{where}.sets: set {short(sm.set)} is {s.family}, rule is {fam}")
        want = 2 if s.type == "hash:ip,port" else 1
        if len(sm.dirs) != want or any(d not in ("src", "dst") for d in sm.dirs):
            raise StateError(f"{where}.sets: set {short(sm.set)} ({s.type}) needs {want} direction(s)")
    _check_values(r, where)


def _text(value: str, where: str, limit: int) -> None:
    if not _PRINTABLE.fullmatch(value):
        bad = next(c for c in value if not " " <= c <= "~")
        raise StateError(f"{where}: {short(value)} has a character outside printable ASCII ({bad!r})")
    if len(value) > limit:
        raise StateError(f"{where}: {short(value)} is longer than the kernel's {limit} characters")


def _check_values(r: Rule, where: str) -> None:
    """The rule's free values, as the kernel takes them: printable ASCII
    (a control character would end the restore line), within xt_comment's,
    NFLOG's and IFNAMSIZ's lengths, known conntrack states, a limit rate
    iptables parses, an NFLOG group that fits a u16."""
    _text(r.comment, f"{where}.comment", MAX_COMMENT)
    _text(r.nflog_prefix, f"{where}.nflog_prefix", MAX_NFLOG_PREFIX)
    for field_name, iface in (("in_iface", r.in_iface), ("out_iface", r.out_iface)):
        if iface:
            _text(iface, f"{where}.{field_name}", MAX_IFACE)
            if not _IFACE.fullmatch(iface):
                raise StateError(f"{where}.{field_name}: {short(iface)} is not an interface name "
                                 "(no blanks, '!', '/', quotes or backslashes)")
    for i, st in enumerate(r.ctstate):
        if st not in CTSTATES:
            raise StateError(f"{where}.ctstate[{i}]: unknown conntrack state {short(st)} "
                             f"(one of {', '.join(CTSTATES)})")
    if len(set(r.ctstate)) != len(r.ctstate):
        raise StateError(f"{where}.ctstate: a state is listed twice")
    if r.limit:
        check_limit(r.limit, f"{where}.limit")
    check_nflog_group(r.nflog_group, f"{where}.nflog_group")


def check_limit(value: str, where: str) -> None:
    """Raise StateError (starting with ``where``) unless ``value`` is a rate
    iptables' limit match takes (also the check of a controller's settings)."""
    m = _LIMIT.fullmatch(value)
    if m is None:
        raise StateError(f"{where}: {short(value)} is not a rate like 10/second "
                         "(N/second, minute, hour or day, or a prefix: 10/sec, 10/s)")
    if XT_LIMIT_SCALE * _LIMIT_SECONDS[m.group(2)[0]] // int(m.group(1)) == 0:
        raise StateError(f"{where}: {short(value)} is faster than iptables' limit match takes "
                         f"(at most {XT_LIMIT_SCALE}/second)")


def check_nflog_group(value: object, where: str) -> None:
    """Raise StateError (starting with ``where``) unless ``value`` is an NFLOG group (a u16)."""
    if not (isinstance(value, int) and 0 <= value <= MAX_NFLOG_GROUP):
        raise StateError(f"{where}: {short(value)} is not in 0..{MAX_NFLOG_GROUP}")


def check_member(s: IPSet, member: str, where: str) -> None:
    """Raise StateError when ``member`` is not canonical for set ``s``."""
    import ipaddress

    def bad(why: str) -> StateError:
        return StateError(f"{where}: {short(member)} is not a valid {s.type} {s.family} member ({why})")

    ver = 4 if s.family == "inet" else 6
    try:
        if s.type == "hash:ip":
            a = ipaddress.ip_address(member)
            if a.version != ver or str(a) != member:
                raise bad("not a canonical address of the family")
        elif s.type == "hash:net":
            n = ipaddress.ip_network(member, strict=True)
            full = 32 if ver == 4 else 128
            canon = str(n.network_address) if n.prefixlen == full else str(n)
            if n.version != ver or canon != member:
                raise bad("not a canonical network of the family")
        else:
            ip, _, pp = member.partition(",")
            proto, _, port = pp.partition(":")
            a = ipaddress.ip_address(ip)
            if a.version != ver or str(a) != ip:
                raise bad("address")
            if proto not in PROTOS or not port.isdigit() or not (0 < int(port) < 65536) or str(int(port)) != port:
                raise bad("protocol:port")
    except ValueError as e:
        if isinstance(e, StateError):
            raise
        why = str(e)  # ipaddress quotes the whole value: cut it
        raise bad(why if len(why) <= 2 * SHORT else f"{why[:2 * SHORT]}\u2026") from None
