"""The python-iptables (libiptc) writer: an alternative to iptables-restore.

Selected with ``--iptables-backend python-iptables``.  It takes the same
``FamilyWrite`` the restore path renders (and the same lines, parsed back
into libiptc rules), so both paths are held to the same tests.  Facts it
works around: libiptc writes *legacy* tables only (invisible to
iptables-nft); it does not take ``/run/xtables.lock``, so we ``flock`` it
ourselves; a table must be refreshed before a second commit; and it
corrupts memory after parsing ``NFLOG --nflog-prefix`` (segfault a few rules
later), and it stores quotes and backslashes in comments escaped; such
rules are refused with a clear error.  One commit
per family per round, as with iptables-restore (libiptc commits the whole
table at once, so the round is atomic too).

libiptc is blocking C code: it runs on one dedicated worker thread, which
can be moved into a network namespace (``netns``) for tests and benchmarks
(``setns`` affects only the calling thread).  ipset is still done with
``ipset restore``; reads still use ``iptables-legacy-save``.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from stockade.state import CHAIN_PREFIX, Family

from .kernel import XTABLES_LOCK, CmdResult
from .restore_builder import FamilyWrite

CLONE_NEWNET = 0x40000000


def _setns(netns: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns({netns}): {os.strerror(e)}")
    finally:
        os.close(fd)


def _split_opts(tokens: list[str]) -> list[tuple[str, list[str], bool]]:
    """``! --mark 0x1/0x1 --set-xmark ...`` -> [(mark, [..], True), ...]."""
    out: list[tuple[str, list[str], bool]] = []
    neg = False
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t == "!":
            neg = True
            i += 1
            continue
        if not t.startswith("--"):
            raise ValueError(f"unexpected argument {t!r}")
        vals = []
        i += 1
        while i < len(tokens) and not tokens[i].startswith("--") and tokens[i] != "!":
            vals.append(tokens[i])
            i += 1
        out.append((t[2:], vals, neg))
        neg = False
    return out


def split_line(line: str) -> list[str]:
    """Split a restore line like iptables-restore does: double quotes group,
    a backslash escapes the next character."""
    out: list[str] = []
    cur: list[str] = []
    quoted = escaped = have = False
    for c in line:
        if escaped:
            cur.append(c)
            escaped = False
        elif c == "\\":
            escaped = have = True
        elif c == '"':
            quoted = not quoted
            have = True
        elif c == " " and not quoted:
            if have:
                out.append("".join(cur))
            cur, have = [], False
        else:
            cur.append(c)
            have = True
    if have:
        out.append("".join(cur))
    return out


def rule_from_line(iptc: Any, family: Family, line: str) -> tuple[str, Any]:
    """``-A CHAIN args`` -> (chain, iptc.Rule)."""
    words = split_line(line)
    chain, args = words[1], words[2:]
    if "--nflog-prefix" in args:
        # Measured here: python-iptables 1.x on libxtables 1.8.9 corrupts
        # memory (segfault a few rules later) after parsing this option.
        raise ValueError(f"{line!r}: the python-iptables backend cannot write NFLOG --nflog-prefix "
                         "(it crashes libxtables); use --iptables-backend legacy")
    for i, a in enumerate(args[:-1]):
        if a == "--comment" and any(c in args[i + 1] for c in "'\\\""):
            # python-iptables stores a quote or backslash escaped (a\'b for a'b).
            raise ValueError(f"{line!r}: the python-iptables backend cannot write a comment with quotes or "
                             "backslashes faithfully; use --iptables-backend legacy")
    rule = iptc.Rule() if family == "inet" else iptc.Rule6()
    exts: list[tuple[str, str, list[str]]] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-i", "-o", "-p"):
            setattr(rule, {"-i": "in_interface", "-o": "out_interface", "-p": "protocol"}[a], args[i + 1])
            i += 2
            continue
        if a not in ("-m", "-j"):
            raise ValueError(f"{line!r}: unexpected {a!r}")
        j = i + 2
        while j < len(args) and args[j] not in ("-m", "-j"):
            j += 1
        exts.append((a, args[i + 1], args[i + 2:j]))
        i = j
    # The target first: python-iptables crashes (libxtables 1.8.9) when a
    # target with a string option (NFLOG --nflog-prefix) follows a match.
    for kind, name, opts in sorted(exts, key=lambda e: e[0] != "-j"):
        ext = rule.create_target(name) if kind == "-j" else rule.create_match(name)
        for opt, vals, neg in _split_opts(opts):
            ext.parse(opt, (["!"] if neg else []) + vals)
    return chain, rule


class IptcWriter:
    """``write(family, FamilyWrite, text)`` -> CmdResult, like a restore call."""

    def __init__(self, netns: str | None = None, lock_path: str = XTABLES_LOCK, lock_timeout: float = 5.0) -> None:
        self.lock_path = lock_path
        self.lock_timeout = lock_timeout
        init = (lambda: _setns(netns)) if netns else None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="iptc", initializer=init)
        self.iptc: Any = None

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    async def write(self, family: Family, w: FamilyWrite, text: str) -> CmdResult:
        t0 = time.perf_counter()
        argv = ("python-iptables", "commit", family)
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._write, family, w)
        except Exception as e:  # libiptc reports errors as IPTCError/ValueError/AttributeError
            return CmdResult(argv, 1, "", f"{type(e).__name__}: {e}", time.perf_counter() - t0)
        return CmdResult(argv, 0, "", "", time.perf_counter() - t0)

    async def read_counters(self, family: Family) -> dict[str, list[tuple[str, int, int]]]:
        """Our chains' rule counters through libiptc: chain -> [(tag, packets, bytes)]."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read_counters, family)

    def _read_counters(self, family: Family) -> dict[str, list[tuple[str, int, int]]]:
        if self.iptc is None:
            import iptc

            self.iptc = iptc
        iptc = self.iptc
        table = iptc.Table(iptc.Table.FILTER) if family == "inet" else iptc.Table6(iptc.Table6.FILTER)
        table.refresh()
        out: dict[str, list[tuple[str, int, int]]] = {}
        for ch in table.chains:
            if not ch.name.startswith(CHAIN_PREFIX):
                continue
            rows = []
            for r in ch.rules:
                tag = ""
                for m in r.matches:
                    if m.name == "comment" and str(m.comment).startswith("stk:"):
                        tag = str(m.comment)[4:]
                        break
                pk, by = r.get_counters()
                rows.append((tag, int(pk), int(by)))
            out[ch.name] = rows
        return out

    def _lock(self) -> int:
        fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        end = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > end:
                    os.close(fd)
                    raise TimeoutError(f"xtables lock {self.lock_path} busy for {self.lock_timeout}s") from None
                time.sleep(0.01)

    def _write(self, family: Family, w: FamilyWrite) -> None:
        if self.iptc is None:
            import iptc

            self.iptc = iptc
        iptc = self.iptc
        fd = self._lock()
        try:
            table = iptc.Table(iptc.Table.FILTER) if family == "inet" else iptc.Table6(iptc.Table6.FILTER)
            table.autocommit = False
            table.refresh()  # a second commit on a stale handle fails
            try:
                for name in (*sorted(w.chains), *w.delete):
                    if table.is_chain(name):
                        table.flush_entries(name)
                    else:
                        table.create_chain(name)
                for name in sorted(w.chains):
                    ch = iptc.Chain(table, name)
                    for r in w.chains[name]:
                        ch.append_rule(rule_from_line(iptc, family, r.line)[1])
                for line in w.hooks_delete:
                    chain, _ = rule_from_line(iptc, family, line)
                    tag = line.split('--comment "stk:', 1)[1][:16] if '"stk:' in line else None
                    ch = iptc.Chain(table, chain)
                    target = line.rsplit(" -j ", 1)[1]
                    for r in ch.rules:
                        if r.target.name == target and (tag is None or any(
                                m.name == "comment" and m.comment == f"stk:{tag}" for m in r.matches)):
                            ch.delete_rule(r)
                            break
                    else:
                        raise ValueError(f"hook rule not found: {line}")
                for builtin, hooks in (w.hooks_insert or {}).items():
                    ch = iptc.Chain(table, builtin)
                    for i, h in enumerate(hooks):
                        ch.insert_rule(rule_from_line(iptc, family, h.line)[1], position=i)
                for name in w.delete:
                    table.delete_chain(name)
                table.commit()
            finally:
                table.autocommit = True
        finally:
            os.close(fd)
