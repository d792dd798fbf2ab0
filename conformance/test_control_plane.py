"""The control plane as a contract: services and real servers created, edited and
refused over netlink; ``ipvsadm -S`` / ``-R``; every net.ipv4.vs sysctl's default and
bounds; one director's namespace invisible from the other's.

No traffic but one connection: these are the promises a configuration tool
(ipvsadm, keepalived, kube-proxy) builds on. Sources: ip_vs_ctl.c,
include/uapi/linux/ip_vs.h, ipvsadm(8), Documentation/networking/ipvs-sysctl.rst.
"""

from __future__ import annotations

import errno

import pytest

from testbed import Cluster
from testbed.ipvs import SYSCTLS, Timeouts
from testbed.observe import (
    EDITS,
    ISOLATION_SYSCTL,
    REFUSALS,
    Edit,
    Refusal,
    available_engines,
    available_schedulers,
    built_by_ipvsadm,
    control_table,
    edit_in_place,
    expected_table,
    fresh_sysctls,
    fresh_timeouts,
    ipvsadm_round_trip,
    loaded,
    namespace_isolation,
    refused_with,
    reported_table,
    service_name,
    sysctl_writes,
)

# its checks hold on a busy guest (it may run beside another run: conftest.py)
pytestmark = pytest.mark.tolerates_load

_EDIT_PORT = 9980


@pytest.fixture(scope="module")
def catalogue(cluster: Cluster) -> list:
    cluster.configure(cluster.base_spec)
    return control_table(cluster.base_spec, schedulers=available_schedulers(),
                         engines=available_engines())  # fmt: skip


def _assert_reads_back(catalogue: list, reported: dict) -> None:
    expected = expected_table(catalogue)
    differing = [k for k in expected if reported.get(k) != expected[k]]
    assert not differing, "\n".join(
        f"{k}:\n  expected {expected[k]}\n  got      {reported.get(k)}" for k in differing
    )
    assert set(reported) == set(expected), "the kernel reports services nobody added"


def test_what_is_set_is_what_the_kernel_reports(cluster: Cluster, catalogue: list) -> None:
    """Every service of the catalogue (each protocol in each mode, each scheduler with
    all its flags, persistence with a client block, port 0, firewall marks, one-packet,
    the SIP engine, every tunnel option to real servers of both families, weights 0 to
    2^31-1 and thresholds) reads back over netlink as it was set, with
    IP_VS_SVC_F_HASHED added (ip_vs_ctl.c ip_vs_genl_fill_service, ip_vs_genl_fill_dest).
    """
    with loaded(cluster, catalogue):
        reported = reported_table(cluster)
    _assert_reads_back(catalogue, reported)


def test_ipvsadm_builds_what_netlink_builds(cluster: Cluster, catalogue: list) -> None:
    """The same catalogue written as ipvsadm(8) commands (-A/-a with -s, -b, -p, -M,
    --pe, -o, -f, -w, -x, -y, --tun-type, --tun-port, --tun-*csum) and loaded with
    ``ipvsadm -R`` reads back exactly as when set over netlink: ipvsadm and the
    kernel agree on every option (ipvsadm(8); ip_vs_ctl.c ip_vs_genl_parse_*)."""
    built = built_by_ipvsadm(cluster, catalogue)
    assert not built.output, f"ipvsadm -R complained:\n{built.output}"
    _assert_reads_back(catalogue, built.reported)


@pytest.mark.parametrize("edit", EDITS, ids=[e.name.replace(" ", "-") for e in EDITS])
def test_an_edit_changes_the_service_in_place(cluster: Cluster, edit: Edit) -> None:
    """IPVS_CMD_SET_SERVICE changes scheduler, flags, persistence timeout, client block
    and engine of a service, and IPVS_CMD_SET_DEST a real server's weight, thresholds,
    forwarding method and tunnel, in place: the service reads back as the edited one
    (ip_vs_ctl.c ip_vs_edit_service, ip_vs_edit_dest)."""
    cluster.configure(cluster.base_spec)
    outcome = edit_in_place(cluster, edit, _EDIT_PORT)
    if outcome is None:
        pytest.skip(f"kernel lacks the persistence engine {edit.name!r} needs")
    assert outcome.after == outcome.expected
    assert outcome.after != outcome.before, "the edit changed nothing the kernel reports"


def test_ipvsadm_save_and_restore_round_trip(cluster: Cluster, catalogue: list) -> None:
    """``ipvsadm -S -n`` then ``ipvsadm -C`` and ``ipvsadm -R`` of what it saved gives
    back the same text and, over netlink, the same services, except the real servers'
    upper and lower thresholds: ``-S`` writes no ``-x`` / ``-y`` (found by this test
    with ipvsadm 1.31), so a restore sets them to 0, and every catalogue service with
    thresholds must be among those that lost them (ipvsadm(8) -S, -R)."""
    trip = ipvsadm_round_trip(cluster, catalogue)
    assert trip.services == len(catalogue)
    assert trip.restored == trip.saved
    assert not trip.lost, f"changed by the round trip: {trip.lost}\nsaved:\n{trip.saved}"
    with_thresholds = sorted(
        service_name(key) for key, state in expected_table(catalogue).items()
        if any(d.upper_threshold or d.lower_threshold for d in state.dests)
    )  # fmt: skip
    assert sorted(trip.thresholds_lost) == with_thresholds


@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.name.replace(" ", "-") for r in REFUSALS])
def test_the_kernel_refuses(cluster: Cluster, refusal: Refusal) -> None:
    """Requests the kernel must refuse, each with its errno: a service or real server
    added twice, edits of what does not exist, an unknown scheduler or engine, a
    negative weight, thresholds the wrong way round, GUE without a port, an IPv6 client
    block over 128 bits (ip_vs_ctl.c ip_vs_genl_set_cmd, ip_vs_add_service,
    ip_vs_add_dest, ip_vs_edit_dest)."""
    got = refused_with(cluster, refusal)
    assert got == refusal.errno, (
        f"{refusal.name}: expected {errno.errorcode[refusal.errno]}, got "
        f"{errno.errorcode.get(got, got) if got else 'success'} ({refusal.source})"
    )


def test_every_sysctl_has_its_default(cluster: Cluster) -> None:
    """In a new network namespace every net.ipv4.vs sysctl has the default ip_vs_ctl.c
    gives it (ipvs-sysctl.rst); a sysctl every known kernel has is present; a kernel's
    sysctl the suite does not know fails, so that a new one is looked at."""
    fresh = fresh_sysctls(cluster)
    unknown = sorted(set(fresh) - set(SYSCTLS))
    assert not unknown, f"sysctls the suite does not know: {unknown} ({fresh})"
    declared = list(SYSCTLS.values())
    missing = [s.name for s in declared if s.name not in fresh and not (s.exists_with or s.module)]
    assert not missing, f"sysctls every known kernel has are absent: {missing}"
    wrong = {s.name: (s.default, fresh[s.name]) for s in declared
             if s.name in fresh and s.default not in (None, fresh[s.name])}  # fmt: skip
    assert not wrong, f"defaults (expected, got): {wrong}"


def test_connection_timeouts_have_their_defaults(cluster: Cluster) -> None:
    """A new namespace's connection-table timeouts are tcp 900 s, tcpfin 120 s, udp 300 s
    (ipvsadm(8) --set; ip_vs_proto_tcp.c tcp_timeouts ESTABLISHED 15*60*HZ, FIN_WAIT
    2*60*HZ; ip_vs_proto_udp.c udp_timeouts NORMAL 5*60*HZ)."""
    assert fresh_timeouts(cluster) == Timeouts(tcp=900, tcpfin=120, udp=300)


def test_bounded_sysctls_refuse_out_of_range_writes(cluster: Cluster) -> None:
    """drop_entry, drop_packet, secure_tcp (0..3), sync_version (0..1), sync_ports (a
    power of 2), sync_retries (0..3), sync_threshold (threshold below period), est_nice
    (-20..19) and conn_lfactor (-8..8) refuse writes out of range and keep their value;
    the writes in range are taken and read back (ip_vs_ctl.c proc_do_defense_mode,
    proc_do_sync_threshold, proc_do_sync_ports; proc_dointvec_minmax). What the plain
    integers take is recorded for the report."""
    present = fresh_sysctls(cluster)
    declared = [s for s in SYSCTLS.values() if s.name in present]
    writes = [(s.name, v) for s in declared for v in (*s.rejects, *s.accepts, *s.probes)]
    results = {(w.name, w.value): w for w in sysctl_writes(cluster, writes)}
    out_of_range = [results[s.name, v] for s in declared for v in s.rejects]
    in_range = [results[s.name, v] for s in declared for v in s.accepts]
    taken = [w for w in out_of_range if w.accepted or w.read_back != w.before]
    refused = [w for w in in_range if not w.accepted or w.read_back != w.value]
    assert not taken, f"out-of-range writes taken or changing the value: {taken}"
    assert not refused, f"in-range writes refused or read back otherwise: {refused}"


def test_namespaces_are_isolated(cluster: Cluster) -> None:
    """A service added, a connection made and net.ipv4.vs.sync_retries set in one
    director's network namespace leave the other director's services, connection
    table and sysctl as they were (IPVS state is per network namespace: struct
    netns_ipvs, include/net/ip_vs.h)."""
    if len(cluster.base_spec.directors) < 2:
        pytest.skip("the topology has one director")
    cluster.configure(cluster.base_spec)
    seen = namespace_isolation(cluster)
    assert seen.added in seen.changed.services and seen.changed.connections >= 1
    assert seen.changed.sysctl == "3", f"{ISOLATION_SYSCTL} was not set where it was written"
    assert seen.other_after == seen.other_before
    assert seen.added not in seen.other_after.services
