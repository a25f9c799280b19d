"""Stockade: Kubernetes NetworkPolicy enforcement with ipset and iptables on any CNI."""

__version__ = "0.1.0"
