"""Network-namespace labs for the root tests (tests only).

``Lab`` builds one node namespace and N pod namespaces, either bridged
(kubenet: bridge cbr0 in the node namespace, br_netfilter on) or routed
(Azure CNI style: one veth per pod, host routes, proxy ARP).  Addresses
come from 198.18.0.0/15.  Everything created is removed in ``close`` (and
the fixtures call it in ``finally``).  Nothing is done in the root
namespace except creating/deleting namespaces.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence

_counter = 0


def sh(argv: Sequence[str], check: bool = True, timeout: float = 10.0, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, timeout=timeout, input=input)


class Lab:
    def __init__(self, pods: int = 3, mode: str = "bridged", subnet: int = 0) -> None:
        global _counter
        _counter += 1
        self.tag = f"{os.getpid() % 100000}{_counter}"
        self.node = f"stkag-{self.tag}"
        self.pods = [f"stkap{i}-{self.tag}" for i in range(pods)]
        self.ips = [f"198.18.{subnet}.{i + 2}" for i in range(pods)]
        self.mode = mode
        self.procs: list[subprocess.Popen[str]] = []
        self.created: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def nsx(self, ns: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def run(self, ns: str, cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(self.nsx(ns, "sh", "-c", cmd), check=check)

    def _add_ns(self, name: str) -> None:
        sh(["ip", "netns", "add", name])
        self.created.append(name)
        sh(self.nsx(name, "ip", "link", "set", "lo", "up"))

    def _build(self) -> None:
        self._add_ns(self.node)
        self.run(self.node, "sysctl -qw net.ipv4.ip_forward=1")
        if self.mode == "routed":  # the pods' gateway address, answered by the node
            self.run(self.node, "ip addr add 169.254.1.1/32 dev lo")
        if self.mode == "bridged":
            third = self.ips[0].split(".")[2]
            self.run(self.node, f"ip link add cbr0 type bridge && ip addr add 198.18.{third}.1/24 dev cbr0 && ip link set cbr0 up")
            self.run(self.node, "sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1")
        for i, (pod, ip) in enumerate(zip(self.pods, self.ips, strict=True)):
            self._add_ns(pod)
            host = f"veth{i}"
            sh(["ip", "link", "add", host, "netns", self.node, "type", "veth", "peer", "name", "eth0", "netns", pod])
            if self.mode == "bridged":
                self.run(self.node, f"ip link set {host} master cbr0 && ip link set {host} up")
                self.run(pod, f"ip addr add {ip}/24 dev eth0 && ip link set eth0 up && "
                              f"ip route add default via {'.'.join(ip.split('.')[:3])}.1")
            else:
                self.run(self.node, f"ip link set {host} up && sysctl -qw net.ipv4.conf.{host}.proxy_arp=1 && "
                                    f"ip route add {ip}/32 dev {host}")
                self.run(pod, f"ip addr add {ip}/32 dev eth0 && ip link set eth0 up && "
                              "ip route add 169.254.1.1 dev eth0 scope link && "
                              "ip route add default via 169.254.1.1 dev eth0")

    # -- traffic
    def serve(self, pod: int, proto: str, port: int) -> None:
        """An echo server in pod ``pod`` (killed in close)."""
        code = (
            "import socket,sys,threading\n"
            f"p={port!r}\n"
            + ("s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', p)); s.listen(64)\n"
               "def h(c):\n"
               "    try:\n"
               "        while True:\n"
               "            d=c.recv(100)\n"
               "            if not d: break\n"
               "            c.sendall(d)\n"
               "    except OSError: pass\n"
               "print('ready', flush=True)\n"
               "while True:\n"
               "    c,_=s.accept(); threading.Thread(target=h,args=(c,),daemon=True).start()\n"
               if proto == "tcp" else
               "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', p))\n"
               "print('ready', flush=True)\n"
               "while True:\n"
               "    d,a=s.recvfrom(100); s.sendto(d,a)\n"))
        p = subprocess.Popen(self.nsx(self.pods[pod], "python3", "-c", code), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        self.procs.append(p)
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.strip() == "ready", line

    def can_reach(self, src: int, dst: int, proto: str, port: int, timeout: float = 0.5) -> bool:
        code = (
            "import socket,sys\n"
            + ("s=socket.socket(); s.settimeout(%r)\n"
               "try:\n    s.connect((%r, %d)); s.sendall(b'x'); ok = s.recv(10) == b'x'\n"
               "except OSError: ok = False\n" if proto == "tcp" else
               "s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(%r)\n"
               "try:\n    s.sendto(b'x', (%r, %d)); ok = s.recvfrom(10)[0] == b'x'\n"
               "except OSError: ok = False\n") % (timeout, self.ips[dst], port)
            + "sys.exit(0 if ok else 1)\n")
        return sh(self.nsx(self.pods[src], "python3", "-c", code), check=False, timeout=timeout + 5).returncode == 0

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for ns in reversed(self.created):
            sh(["ip", "netns", "del", ns], check=False)
        self.created.clear()


def wait_for(pred: object, timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False
