"""The pure lab plan: names, addresses, and what each namespace gets."""

from __future__ import annotations

import pytest

from stockade.case_addresses import node_ip, pod_cidr
from stockade.lab.topology import (
    External,
    LabPlan,
    TopologyError,
    check_ifnames,
    runid_of,
)


def lines(plan: LabPlan, ns: str) -> list[str]:
    return [ln for phase in plan.base_batches() for b in phase if b.netns == ns for ln in b.ip_lines]


def sysctls(plan: LabPlan, ns: str) -> dict[str, str]:
    return {k: v for phase in plan.base_batches() for b in phase if b.netns == ns for k, v in b.sysctls}


def test_names_are_prefixed_and_unique() -> None:
    plan = LabPlan("ab12cd", "bridged", 3, (External("internet", "192.0.2.10"),))
    names = plan.base_namespaces()
    assert len(set(names)) == len(names) == 2 + 3 + 1
    assert all(n.startswith("stklab-ab12cd-") for n in names)
    assert {runid_of(n) for n in names} == {"ab12cd"}
    assert runid_of("stk-other") is None and runid_of("stklab-") is None


def test_bridged_node_has_cbr0_gateway_routes_and_br_netfilter() -> None:
    plan = LabPlan("r1", "bridged", 3)
    n1 = lines(plan, plan.node_ns(1))
    assert "addr add 198.18.1.1/24 dev cbr0" in n1
    assert f"addr add {node_ip(1)}/24 dev eth0" in n1
    assert f"route add {pod_cidr(0)} via {node_ip(0)}" in n1
    assert f"route add {pod_cidr(2)} via {node_ip(2)}" in n1
    assert not any(pod_cidr(1) in ln and "route" in ln for ln in n1)
    s = sysctls(plan, plan.node_ns(1))
    assert s["net.ipv4.ip_forward"] == "1" and s["net.bridge.bridge-nf-call-iptables"] == "1"


def test_routed_node_has_no_bridge_and_pods_get_host_routes() -> None:
    plan = LabPlan("r1", "routed", 2)
    n0 = lines(plan, plan.node_ns(0))
    assert not any("cbr0" in ln for ln in n0)
    assert "addr add 198.18.0.1/32 dev lo" in n0
    pod = plan.pod("d/a", 7, 0, "198.18.0.5", False)
    phases = plan.pod_batches(pod)
    node_lines = [ln for ph in phases for b in ph if b.netns == plan.node_ns(0) for ln in b.ip_lines]
    assert "route add 198.18.0.5/32 dev v7" in node_lines
    node_sys = {k for ph in phases for b in ph if b.netns == plan.node_ns(0) for k, _ in b.sysctls}
    assert "net.ipv4.conf.v7.proxy_arp" in node_sys


def test_underlay_routes_pod_cidrs_and_outside_hosts_without_nat() -> None:
    plan = LabPlan("r1", "bridged", 2, (External("a", "192.0.2.10"), External("b", "203.0.113.7")))
    u = lines(plan, plan.underlay_ns)
    assert f"route add {pod_cidr(1)} via {node_ip(1)}" in u
    assert "route add 203.0.113.7/32 dev x1" in u
    assert not any("MASQUERADE" in ln or "nat" in ln for ln in u)
    assert "addr add 203.0.113.7/32 dev eth0" in lines(plan, plan.external_ns(1))


def test_host_network_pod_uses_the_node() -> None:
    plan = LabPlan("r1", "bridged", 2)
    pod = plan.pod("d/h", 0, 1, "", True)
    assert pod.ip == node_ip(1) and pod.netns == plan.node_ns(1)
    assert plan.pod_batches(pod) == []


@pytest.mark.parametrize(("kwargs", "field"), [
    pytest.param({"nodes": 0}, "nodes", id="no-nodes"),
    pytest.param({"mode": "overlay"}, "mode", id="bad-mode"),
    pytest.param({"externals": (External("x", "198.18.0.9"),)}, "external[0].ip", id="external-in-pod-range"),
    pytest.param({"externals": (External("x", "192.0.2.1"), External("y", "192.0.2.1"))}, "external[1].ip",
                 id="external-twice"),
    pytest.param({"runid": "no/slash"}, "runid", id="bad-runid"),
])
def test_bad_plans_name_the_field(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"runid": "r1", "mode": "bridged", "nodes": 2, **kwargs}
    with pytest.raises(TopologyError, match=field.replace("[", r"\[").replace("]", r"\]")):
        LabPlan(**args)  # type: ignore[arg-type]


def test_pod_address_must_be_in_its_node_cidr() -> None:
    plan = LabPlan("r1", "bridged", 2)
    with pytest.raises(TopologyError, match="not a pod address of node 0"):
        plan.pod("d/a", 0, 0, "198.18.1.2", False)
    with pytest.raises(TopologyError, match="not a pod address"):
        plan.pod("d/a", 0, 0, "198.18.0.1", False)  # the gateway
    with pytest.raises(TopologyError, match="node 5"):
        plan.pod("d/a", 0, 5, "198.18.5.2", False)


def test_interface_names_fit_for_large_labs() -> None:
    plan = LabPlan("abcdef123456", "routed", 200, tuple(External(f"e{j}", f"192.0.2.{j + 1}") for j in range(50)))
    check_ifnames(plan.base_batches())
    check_ifnames(plan.pod_batches(plan.pod("d/a", 99999, 199, "198.18.199.254", False)))
