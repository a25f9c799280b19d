#!/usr/bin/env bash
# Installs everything Stockade needs on a Debian machine (run as root):
# system packages (iptables, ipset, iproute2, conntrack, chromium, ...) and a
# virtual environment in .venv with the project and its test extras.
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

SYS_PKGS=(iptables ipset iproute2 conntrack kmod procps psmisc chromium python3 python3-venv python3-pip ca-certificates)
missing=()
for p in "${SYS_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# kubectl is on the image; it is only used by optional tests when present.

# The kernel modules the dataplane uses (ignored where built in).
for m in br_netfilter xt_set ip_set ip_set_hash_ip ip_set_hash_net ip_set_hash_ipport nf_conntrack xt_physdev xt_NFLOG; do
  modprobe -q "$m" 2>/dev/null || true
done

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.stockade-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
