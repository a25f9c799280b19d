"""An in-memory kernel that speaks the same commands as the real one.

Implements, for the agent's fast tests and for the wire engineer's many
simulated agents:

* ``ipset save [NAME]`` / ``ipset restore [-exist]`` / ``ipset list -n`` /
  ``ipset version``: create (with hashsize/maxelem/counters), add (with
  ``nomatch``; "Hash is full" beyond maxelem), del, flush, destroy (refused
  while a rule uses the set), swap (same type and family), rename.  Like
  the real ``ipset restore`` it stops at the first bad line; earlier lines
  stay applied.
* ``iptables[-nft|-legacy]-save`` / ``-restore`` and the ``ip6tables``
  equivalents for table ``filter``: chain declarations (create, or flush an
  existing user chain under ``--noflush``), ``-A/-I/-D/-F/-X/-N``, ``COMMIT``
  all-or-nothing; jumps to missing chains and matches on missing sets are
  refused.  nft and legacy are separate tables, as in the kernel.
  ``-c`` prints per-rule counters (``bump`` sets them).
* ``conntrack -L -f`` lists, ``conntrack -D`` with ``-s/-d/-p/-f`` deletes matching entries from
  :attr:`FakeKernel.conntrack` and records the call.
* ``cat PATH`` of :attr:`FakeKernel.files`.

Rule arguments are stored as written (the real kernel canonicalises; our
renderer already writes the canonical spelling, which the root tests
check).  ``fail_next`` injects failures; ``observer`` is called after every
step the kernel would make visible (each ipset line, each COMMIT), so tests
can check every intermediate state.  Not a packet simulator.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .kernel import CmdResult

BUILTINS = ("INPUT", "FORWARD", "OUTPUT")
_MATCH_SET = re.compile(r"--match-set (\S+)")
_TARGETS = {"ACCEPT", "DROP", "RETURN", "REJECT", "MARK", "NFLOG", "LOG", "CONNMARK"}


@dataclass
class FSet:
    type: str
    family: str
    hashsize: int = 1024
    maxelem: int = 65536
    counters: bool = False
    members: dict[str, tuple[int, int]] = field(default_factory=dict)
    nomatch: set[str] = field(default_factory=set)


@dataclass
class FTable:
    chains: dict[str, list[str]] = field(default_factory=lambda: {b: [] for b in BUILTINS})
    policy: dict[str, str] = field(default_factory=lambda: dict.fromkeys(BUILTINS, "ACCEPT"))
    counters: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)


class CmdError(Exception):
    pass


def _canon_member(stype: str, family: str, elem: str) -> str:
    ver = 4 if family == "inet" else 6
    try:
        if stype == "hash:ip":
            a = ipaddress.ip_address(elem)
            if a.version != ver:
                raise ValueError("family")
            return str(a)
        if stype == "hash:net":
            n = ipaddress.ip_network(elem, strict=False)
            if n.version != ver:
                raise ValueError("family")
            return str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)
        ip, _, pp = elem.partition(",")
        proto, _, port = pp.partition(":")
        a = ipaddress.ip_address(ip)
        if a.version != ver or proto not in ("tcp", "udp", "sctp") or not port.isdigit():
            raise ValueError("bad")
        return f"{a},{proto}:{int(port)}"
    except ValueError:
        raise CmdError(f"Syntax error: '{elem}' is not a valid {stype} element") from None


class FakeKernel:
    """See module docstring.  ``writes`` counts mutating commands run."""

    def __init__(self) -> None:
        self.sets: dict[str, FSet] = {}
        self.tables: dict[tuple[str, str], FTable] = {}
        self.conntrack: list[dict[str, str]] = []
        self.conntrack_calls: list[tuple[str, ...]] = []
        self.files: dict[str, str] = {}
        self.log: list[tuple[str, ...]] = []
        self.writes = 0
        self.fail_next: dict[str, str] = {}  # command name -> stderr of one injected failure
        # Called after every kernel-visible step: each line of an ipset restore
        # (the real one applies line by line) and each iptables COMMIT.
        self.observer: Callable[[], None] | None = None

    # -- helpers for tests
    def table(self, flavour: str = "nft", family: str = "inet") -> FTable:
        return self.tables.setdefault((flavour, family), FTable())

    def bump(self, flavour: str, family: str, line: str, packets: int, nbytes: int) -> None:
        self.table(flavour, family).counters[(line.split(" ", 2)[1], line)] = (packets, nbytes)

    def set_referenced(self, name: str) -> bool:
        pat = f"--match-set {name} "
        return any(pat in r for t in self.tables.values() for rs in t.chains.values() for r in rs)


    # -- the Kernel interface
    async def run(self, argv: Sequence[str], stdin: str | None = None, *, timeout: float = 30.0) -> CmdResult:
        argv = tuple(argv)
        self.log.append(argv)
        cmd = argv[0]
        if cmd in self.fail_next:
            return CmdResult(argv, 1, "", self.fail_next.pop(cmd))
        try:
            out = self._dispatch(argv, stdin or "")
        except CmdError as e:
            return CmdResult(argv, 1, "", str(e))
        return CmdResult(argv, 0, out, "")

    def _dispatch(self, argv: tuple[str, ...], stdin: str) -> str:
        cmd = argv[0]
        if cmd == "ipset":
            return self._ipset(argv[1:], stdin)
        m = re.fullmatch(r"(ip6?)tables(?:-(nft|legacy))?-(save|restore)", cmd)
        if m:
            fam = "inet" if m.group(1) == "ip" else "inet6"
            flavour = m.group(2) or "nft"
            if m.group(3) == "save":
                return self._save(flavour, fam, "-c" in argv)
            self.writes += 1
            self._restore(flavour, fam, stdin, "--noflush" in argv)
            return ""
        if cmd == "conntrack":
            return self._conntrack(argv[1:])
        if cmd == "cat":
            if argv[1] not in self.files:
                raise CmdError(f"cat: {argv[1]}: No such file or directory")
            return self.files[argv[1]]
        raise CmdError(f"{cmd}: command not found")

    # -- ipset
    def _ipset(self, args: tuple[str, ...], stdin: str) -> str:
        if args[:1] == ("version",):
            return "ipset v7.17 (fake), protocol version: 7\n"
        if args[:2] == ("list", "-n"):
            return "".join(n + "\n" for n in self.sets)
        if args[:1] == ("save",):
            names = [args[1]] if len(args) > 1 else list(self.sets)
            out = []
            for n in names:
                s = self.sets.get(n)
                if s is None:
                    raise CmdError("ipset v7.17: The set with the given name does not exist")
                out.append(f"create {n} {s.type} family {s.family} hashsize {s.hashsize} maxelem {s.maxelem}"
                           + (" counters" if s.counters else "") + " bucketsize 12 initval 0x00000000")
                out += [f"add {n} {m} nomatch" for m in s.nomatch]
                for m, (p, b) in s.members.items():
                    out.append(f"add {n} {m}" + (f" packets {p} bytes {b}" if s.counters else ""))
            return "".join(line + "\n" for line in out)
        if args[:1] == ("restore",):
            self.writes += 1
            exist = "-exist" in args or "-!" in args
            for no, line in enumerate(stdin.splitlines(), 1):
                if not line.strip() or line.startswith("#"):
                    continue
                try:
                    self._ipset_cmd(line.split(), exist)
                except CmdError as e:
                    raise CmdError(f"ipset v7.17: Error in line {no}: {e}") from None
                if self.observer is not None:
                    self.observer()
            return ""
        self.writes += 1
        self._ipset_cmd(list(args), "-exist" in args)
        return ""

    def _ipset_cmd(self, w: list[str], exist: bool) -> None:
        w = [x for x in w if x not in ("-exist", "-!")]
        verb = w[0]
        if verb == "create":
            name, stype = w[1], w[2]
            opts = w[3:]
            s = FSet(stype, "inet")
            i = 0
            while i < len(opts):
                o = opts[i]
                if o == "counters":
                    s.counters = True
                    i += 1
                    continue
                if o == "family":
                    s.family = opts[i + 1]
                elif o == "hashsize":
                    s.hashsize = int(opts[i + 1])
                elif o == "maxelem":
                    s.maxelem = int(opts[i + 1])
                elif o not in ("bucketsize", "initval"):
                    raise CmdError(f"Unknown argument: '{o}'")
                i += 2
            if stype not in ("hash:ip", "hash:net", "hash:ip,port"):
                raise CmdError(f"Unknown set type {stype}")
            old = self.sets.get(name)
            if old is not None:
                if exist and (old.type, old.family, old.counters) == (s.type, s.family, s.counters):
                    return
                raise CmdError("Set cannot be created: set with the same name already exists")
            self.sets[name] = s
            return
        if verb in ("flush", "destroy") and len(w) == 1:
            for n in list(self.sets):
                self._ipset_cmd([verb, n], exist)
            return
        name = w[1]
        found = self.sets.get(name)
        if found is None:
            raise CmdError("The set with the given name does not exist")
        s = found
        if verb == "add":
            elem = _canon_member(s.type, s.family, w[2])
            nm = "nomatch" in w[3:]
            if elem in s.members or elem in s.nomatch:
                if exist:
                    return
                raise CmdError("Element cannot be added to the set: it's already added")
            if len(s.members) + len(s.nomatch) >= s.maxelem:
                raise CmdError("Hash is full, cannot add more elements")
            if nm:
                s.nomatch.add(elem)
            else:
                s.members[elem] = (0, 0)
        elif verb == "del":
            elem = _canon_member(s.type, s.family, w[2])
            if elem in s.members:
                del s.members[elem]
            elif elem in s.nomatch:
                s.nomatch.discard(elem)
            elif not exist:
                raise CmdError("Element cannot be deleted from the set: it's not added")
        elif verb == "flush":
            s.members.clear()
            s.nomatch.clear()
        elif verb == "destroy":
            if self.set_referenced(name):
                raise CmdError("Set cannot be destroyed: it is in use by a kernel component")
            del self.sets[name]
        elif verb == "swap":
            other = self.sets.get(w[2])
            if other is None:
                raise CmdError("The set with the given name does not exist")
            if (other.type, other.family) != (s.type, s.family):
                raise CmdError("The sets cannot be swapped: their type does not match")
            self.sets[name], self.sets[w[2]] = other, s
        elif verb == "rename":
            if w[2] in self.sets:
                raise CmdError("Set cannot be renamed: a set with the new name already exists")
            self.sets[w[2]] = self.sets.pop(name)
        else:
            raise CmdError(f"Unknown command {verb}")

    # -- iptables
    def _save(self, flavour: str, fam: str, counters: bool) -> str:
        t = self.table(flavour, fam)
        out = ["# Generated by fake iptables-save", "*filter"]
        out += [f":{b} {t.policy[b]} [0:0]" for b in BUILTINS]
        out += [f":{c} - [0:0]" for c in t.chains if c not in BUILTINS]
        for c, rules in t.chains.items():
            for r in rules:
                line = f"-A {c} {r}"
                if counters:
                    p, b = t.counters.get((c, line), (0, 0))
                    line = f"[{p}:{b}] {line}"
                out.append(line)
        out += ["COMMIT", "# Completed"]
        return "".join(line + "\n" for line in out)

    def _restore(self, flavour: str, fam: str, text: str, noflush: bool) -> None:
        key = (flavour, fam)
        work: FTable | None = None
        added: list[str] = []  # rules appended/inserted in the open transaction
        for no, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            try:
                if s.startswith("*"):
                    if s != "*filter":
                        raise CmdError(f"table '{s[1:]}' is not supported by the fake")
                    cur = self.table(flavour, fam)
                    work = FTable({c: list(r) for c, r in cur.chains.items()}, dict(cur.policy), dict(cur.counters))
                    added = []
                    if not noflush:
                        work = FTable()
                    continue
                if work is None:
                    raise CmdError("no table specified")
                if s == "COMMIT":
                    self._check(added, fam)
                    self.tables[key] = work
                    if self.observer is not None:
                        self.observer()
                    work = None
                    continue
                if s.startswith(":"):
                    name, policy = s[1:].split()[:2]
                    if name in BUILTINS:
                        work.policy[name] = policy
                    else:
                        work.chains[name] = []
                    continue
                words = shlex.split(s)
                self._rule_cmd(work, words)
                if words[0] in ("-A", "-I"):
                    added.append(s)
            except CmdError as e:
                raise CmdError(f"{e}\niptables-restore: line {no} failed") from None
            except (ValueError, IndexError):
                raise CmdError(f"iptables-restore: line {no} failed") from None
        if work is not None:
            raise CmdError("iptables-restore: COMMIT expected at line end")

    @staticmethod
    def _args_text(args: list[str]) -> str:
        """Stored spelling: string values quoted as iptables-save does."""
        out = []
        for i, a in enumerate(args):
            if i and args[i - 1] in ("--comment", "--nflog-prefix") and not re.fullmatch(r"[A-Za-z0-9_-]+", a):
                a = '"' + re.sub(r'(["\\\'])', r"\\\1", a) + '"'
            out.append(a)
        return " ".join(out)

    def _rule_cmd(self, t: FTable, w: list[str]) -> None:
        op, chain = w[0], w[1] if len(w) > 1 else ""
        if op == "-N":
            if chain in t.chains:
                raise CmdError("Chain already exists.")
            t.chains[chain] = []
            return
        if chain not in t.chains:
            raise CmdError(f"Couldn't load target `{chain}':No such file or directory" if op != "-X"
                           else "No chain/target/match by that name.")
        rules = t.chains[chain]
        if op in ("-A", "-I") and "-j" in w:
            target = w[w.index("-j") + 1]
            if target not in _TARGETS and target not in t.chains:
                raise CmdError(f"Couldn't load target `{target}':No such file or directory")
        if op == "-A":
            rules.append(self._args_text(w[2:]))
        elif op == "-I":
            pos = 1
            rest = w[2:]
            if rest and rest[0].isdigit():
                pos, rest = int(rest[0]), rest[1:]
            if pos > len(rules) + 1:
                raise CmdError("Index of insertion too big.")
            rules.insert(pos - 1, self._args_text(rest))
        elif op == "-D":
            rest = w[2:]
            if len(rest) == 1 and rest[0].isdigit():
                i = int(rest[0]) - 1
                if not 0 <= i < len(rules):
                    raise CmdError("Index of deletion too big.")
                del rules[i]
            else:
                txt = self._args_text(rest)
                if txt not in rules:
                    raise CmdError("Bad rule (does a matching rule exist in that chain?).")
                rules.remove(txt)
        elif op == "-F":
            rules.clear()
        elif op == "-X":
            if chain in BUILTINS:
                raise CmdError("Can't delete built-in chain")
            if rules:
                raise CmdError("Directory not empty.")
            if any(f"-j {chain}" == r[-len(chain) - 3:] for rs in t.chains.values() for r in rs):
                raise CmdError("Too many links.")
            del t.chains[chain]
        else:
            raise CmdError(f"unknown option {op!r}")

    def _check(self, added: list[str], fam: str) -> None:
        """At COMMIT: the sets the new rules match on must exist, in the family."""
        for r in added:
            for m in _MATCH_SET.finditer(r):
                s = self.sets.get(m.group(1))
                if s is None:
                    raise CmdError(f"Set {m.group(1)} doesn't exist.")
                if s.family != fam:
                    raise CmdError(f"The protocol family of set {m.group(1)} is not {fam}")

    # -- conntrack
    def _conntrack(self, args: tuple[str, ...]) -> str:
        if args[:1] == ("-L",):
            fam = args[args.index("-f") + 1] if "-f" in args else "ipv4"
            return "".join(f"{e.get('proto', 'tcp')} 6 431999 ESTABLISHED src={e['src']} dst={e['dst']} "
                           f"sport=40000 dport={e.get('dport', '80')} src={e['dst']} dst={e['src']} mark=0 use=1\n"
                           for e in self.conntrack if e.get("family", "ipv4") == fam)
        if args[:1] != ("-D",):
            raise CmdError("fake conntrack only lists and deletes")
        self.writes += 1
        self.conntrack_calls.append(args)
        want: dict[str, str] = {}
        i = 1
        keys = {"-s": "src", "-d": "dst", "-p": "proto", "--dport": "dport", "-f": "family",
                "--orig-src": "src", "--orig-dst": "dst"}
        while i < len(args):
            if args[i] in keys:
                want[keys[args[i]]] = args[i + 1]
                i += 2
            else:
                raise CmdError(f"unknown conntrack option {args[i]}")
        fam = want.pop("family", "ipv4")
        before = len(self.conntrack)
        self.conntrack = [e for e in self.conntrack
                          if not (e.get("family", "ipv4") == fam and all(e.get(k) == v for k, v in want.items()))]
        n = before - len(self.conntrack)
        if n == 0:
            raise CmdError("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.")
        return f"conntrack v1.4.7 (conntrack-tools): {n} flow entries have been deleted.\n"
