"""VRRP failover with keepalived: the VIP moves, clients follow, timing obeys the RFC.

Each failover (VRRPv2 with advert_int 1 s, VRRPv3 with 0.3 s; keepalived
stopped, killed, or its director's cable cut) runs once and is checked by
several tests. An IPv6 VIP fails over too (VRRPv3, which carries IPv6): the
new master announces it with unsolicited neighbour advertisements, counted
like gratuitous ARPs. Sources: RFC 3768 / RFC 5798 section 6 (master-down
interval, skew, priority 0 on shutdown, preemption), RFC 5798 8.1.2 / 8.2.2
(gratuitous ARP, unsolicited NA), keepalived.conf(5) (state, priority,
nopreempt, garp_master_repeat / garp_master_delay / vrrp_garp_interval, which
govern unsolicited NAs as well).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from conformance import failover_promises as promise
from conformance.conftest import skip_unless_family, skip_unless_topology
from testbed import Cluster
from testbed.ha import FAULTS, HaPair, Vrrp, master_down_interval
from testbed.observe import Failover, observe_failover
from testbed.registry import FAMILIES, Family

V2 = Vrrp(version=2, advert_int=1.0)
V3 = Vrrp(version=3, advert_int=0.3)
GARP = Vrrp(version=3, advert_int=0.3, garp_repeat=3, garp_delay=2)
PACED = Vrrp(version=3, advert_int=0.3, garp_repeat=3, garp_delay=2, garp_interval=0.2)
IPV4, IPV6 = FAMILIES.values()
CASES = [(v, f, IPV4) for v in (V2, V3) for f in FAULTS] + [
    (GARP, "stop", IPV4),
    (PACED, "stop", IPV4),
    # an IPv6 VIP: a clean handover, and a killed master that keeps its VIP behind
    (V3, "stop", IPV6),
    (V3, "kill", IPV6),
]
# keepalived (through at least 2.2.7) merges the repeats of a paced burst: with
# vrrp_garp_interval > 0 each address gets one GARP at once and one queued, so
# 2 per burst whatever garp_master_repeat says (vrrp_arp.c queue_garp; upstream
# issue acassen/keepalived#1760). The suite keeps the documented promise and
# records the deviation.
PACED_BUG = "keepalived#1760: vrrp_garp_interval > 0 sends 2 GARPs per burst, not repeat"
SENT_TWICE = ("keepalived 2.2 sometimes sends its takeover burst twice, an advert interval "
              "apart (its log records both sends; seen with VRRPv3 and an IPv6 VIP)")  # fmt: skip


def _case_id(case: tuple[Vrrp, str, Family]) -> str:
    vrrp, fault, family = case
    return f"{vrrp.label}-{fault}" + ("" if family is IPV4 else f"-{family.name}")


class Pairs:
    """One keepalived pair at a time, in the address family a case asks for."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.current: HaPair | None = None

    def get(self, family: Family) -> HaPair:
        if self.current is not None and self.current.spec.service.family is not family:
            self.close()
        if self.current is None:
            skip_unless_family(self.cluster, family)
            # VRRP does not look at the forwarding mode
            pair = HaPair(self.cluster, vrrp=V2, family=family)
            pair.__enter__()
            self.current = pair
        return self.current

    def close(self) -> None:
        if self.current is not None:
            self.current.__exit__(None, None, None)
            self.current = None


@pytest.fixture(scope="module")
def pairs(cluster: Cluster) -> Iterator[Pairs]:
    skip_unless_topology(cluster, directors=2)
    made = Pairs(cluster)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def ha(pairs: Pairs) -> HaPair:
    return pairs.get(IPV4)


@pytest.fixture(scope="module", params=CASES, ids=_case_id)
def failover(request: pytest.FixtureRequest, pairs: Pairs) -> Failover:
    vrrp, fault, family = request.param
    ha = pairs.get(family)
    ha.reconfigure(vrrp)
    return observe_failover(ha, fault)


def test_vip_moves_to_backup(failover: Failover) -> None:
    """The backup adds the VIP when the master fails; a master that stopped or lost its
    link drops it (keepalived.conf(5), RFC 5798 6.4.3). A killed keepalived cannot
    clean up, so its VIP stays behind: clients must then follow the gratuitous ARP."""
    promise.vip_moved(failover)


def test_takeover_time_matches_vrrp_formula(failover: Failover) -> None:
    """Backup becomes master Master_Down_Interval = 3 x advert_int + skew after the last
    advertisement of a silent master, or skew after a priority-0 advertisement
    (RFC 3768 / RFC 5798 6.4.2, 6.4.3)."""
    promise.takeover_in_window(failover)


def test_service_restored_through_backup(failover: Failover) -> None:
    """The first client connection that succeeds through the backup comes right after the
    takeover: gratuitous ARP moves clients at once (keepalived.conf(5))."""
    promise.service_restored(failover)


def test_gratuitous_arp_count_and_spacing(failover: Failover) -> None:
    """At takeover the new master sends garp_master_repeat gratuitous ARPs (for an IPv6
    VIP unsolicited NAs) for the VIP, vrrp_garp_interval apart, and the same again
    garp_master_delay later (keepalived.conf(5); defaults 5, 0 s, 5 s)."""
    if failover.garp.interval > 0 and _merged_bursts(failover):
        pytest.xfail(PACED_BUG)
    if promise.takeover_burst_sent_twice(failover):
        pytest.xfail(f"{SENT_TWICE}\n{failover.vrrp_story()}")
    promise.garp_as_promised(failover)


def _merged_bursts(failover: Failover) -> bool:
    """The known deviation and only it: two paced GARPs per burst, otherwise as promised."""
    groups = failover.garp.bursts_of(failover.garp_times)
    return len(groups) == 2 and all(len(g) == 2 for g in groups)


def test_backup_stays_master_while_the_master_is_down(failover: Failover) -> None:
    """Once master, the backup stays master until a higher-priority advertisement comes:
    a stopped master is silent after its priority-0 advertisement, a killed or cut one
    is silent altogether (RFC 5798 6.4.3, 6.4.1)."""
    if failover.master_exits and failover.adverts_after_shutdown():
        pytest.xfail(
            f"{failover.master} advertised again after its shutdown priority 0: "
            f"{failover.vrrp_story()}"
        )
    promise.backup_stays_master(failover)


def test_client_arp_cache_points_at_backup(failover: Failover) -> None:
    """After the gratuitous ARP the client's neighbour entry for the VIP carries the
    backup's MAC, even when the killed master still holds the address (RFC 5798 8.1.2:
    the ARP update is what moves traffic)."""
    promise.client_follows(failover)


def test_preempting_master_takes_vip_back(failover: Failover) -> None:
    """With preemption (the default) the higher-priority director becomes master again
    within one master-down interval of returning, and the VIP is on it alone
    (keepalived.conf(5) preempt, RFC 5798 6.4.2)."""
    promise.failback(failover)


def test_nopreempt_keeps_the_new_master(ha: HaPair) -> None:
    """With nopreempt a returning higher-priority director stays BACKUP; the VIP stays on
    the director that took over (keepalived.conf(5): nopreempt, initial state BACKUP)."""
    vrrp = Vrrp(version=3, advert_int=0.3, preempt=False)
    ha.reconfigure(vrrp)
    first, second = (ha.keepalived[n] for n in ha.names)
    fault_at = ha.fail("stop")
    second.wait_state("MASTER", timeout=10, after=fault_at)
    back_at = ha.recover("stop")
    first.wait_state("BACKUP", timeout=20, after=back_at)
    wait = 3 * master_down_interval(
        priority=vrrp.priorities[0], advert_int=vrrp.advert_int, version=vrrp.version
    )
    time.sleep(wait)
    assert first.state == "BACKUP" and second.state == "MASTER", (first.states(), second.states())
    assert ha.holders() == [ha.names[1]]
    # leave the pair as the other tests expect it: the preferred director master
    ha.reconfigure(V2)
