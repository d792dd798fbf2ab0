"""Persistent services: one client kept on one real server by a template entry.

A service with ``ipvsadm -p`` schedules a client's first connection and keeps
its later ones on the same real server through a template entry (client port
0) whose timer each connection restarts at the persistence timeout; once the
template has expired with no connection left to control, the client is
scheduled afresh (rr: the next real server). A template naming a real server
of weight 0 holds, unless expire_quiescent_template is 1.
Sources: ipvsadm(8) -p; net/netfilter/ipvs/ip_vs_core.c ip_vs_sched_persist;
ip_vs_conn.c ip_vs_conn_expire, ip_vs_check_template; ipvs-sysctl.rst
expire_quiescent_template.
"""

from __future__ import annotations

import ipaddress
import shutil

import pytest

from testbed import Cluster
from testbed.kernel import missing_module
from testbed.observe import (
    SCOPE_MARK,
    PersistenceRecord,
    QuiescentRecord,
    ScopeRecord,
    SipRecord,
    persistence_lifetime,
    persistence_scope,
    quiescent_template,
    sip_persistence,
)
from testbed.registry import MODES, Mode

EXPIRY_SLACK_S = 3  # the table is polled every 0.5 s; whole-second timers


@pytest.fixture(scope="module")
def persistence(state_table_mode: Mode, cluster: Cluster) -> PersistenceRecord:
    return persistence_lifetime(cluster, state_table_mode)


def test_connections_of_a_client_keep_their_real_server(persistence: PersistenceRecord) -> None:
    """Every connection of the client while its template lives goes to the real server
    its first connection was scheduled to (rr's first choice), where plain rr would
    move on at each.

    Source: ip_vs_core.c ip_vs_sched_persist (an existing template sets the
    destination).
    """
    p = persistence
    assert p.held == [p.model[0]] * len(p.held), (
        f"connections went to {p.held}; persistence should keep them all on rr's first "
        f"choice {p.model[0]}"
    )


def test_template_entry_names_the_real_server(persistence: PersistenceRecord) -> None:
    """The table holds one template for the client (port 0) to that real server, its
    timer restarted at the persistence timeout by the last connection.

    Source: ip_vs_core.c ip_vs_sched_persist (ct->timeout = svc->timeout);
    ip_vs_conn.c ip_vs_conn_put (the timer restarts).
    """
    p = persistence
    assert len(p.template) == 1, f"templates of the client: {p.template}"
    [t] = p.template
    assert t.dest == p.held[0], f"template to {t.dest}, connections to {p.held[0]}"
    assert p.timeout - EXPIRY_SLACK_S <= t.expires <= p.timeout, (
        f"template timer {t.expires} s right after the connections; -p {p.timeout}"
    )


def test_template_expires_and_the_client_is_scheduled_afresh(
    persistence: PersistenceRecord,
) -> None:
    """With its connections gone, the template leaves the table at the persistence
    timeout after the last connection, and the client's next connection is scheduled:
    rr's next choice.

    Source: ip_vs_conn.c ip_vs_conn_expire (n_control: a template expires only
    once it controls no connection); ipvsadm(8) -p.
    """
    p = persistence
    assert p.gone_after_s is not None, f"template still there {p.timeout + 75} s on: {p}"
    assert p.timeout - 1 <= p.gone_after_s <= p.timeout + EXPIRY_SLACK_S, (
        f"template gone {p.gone_after_s} s after the last connection; -p {p.timeout}"
    )
    assert p.after == p.model[1], (
        f"after the template expired the client went to {p.after}; rr's next choice is {p.model[1]}"
    )


@pytest.fixture(scope="module", params=[0, 1], ids=lambda v: f"expire_quiescent_template={v}")
def quiescent(request: pytest.FixtureRequest, cluster: Cluster) -> QuiescentRecord:
    return quiescent_template(cluster, MODES["nat"], request.param)


def test_quiescent_template_holds_unless_expired_by_the_sysctl(quiescent: QuiescentRecord) -> None:
    """A template's real server set to weight 0 (quiescent) still takes the client's
    next connection with expire_quiescent_template 0; with 1 the template is
    invalidated (its ports rewritten to 65535) and the connection is scheduled to
    another real server.

    Source: ipvs-sysctl.rst expire_quiescent_template; ip_vs_conn.c
    ip_vs_check_template, expire_quiescent_template.
    """
    q = quiescent
    if q.sysctl == 0:
        assert q.second == q.first, (
            f"weight 0 on {q.first}: the next connection went to {q.second}; the template "
            f"should hold with expire_quiescent_template=0 ({q.templates})"
        )
    else:
        assert q.second not in (q.first, "?", "(no entry)"), (
            f"weight 0 on {q.first}: the next connection went to {q.second}; the template "
            f"should have been expired ({q.templates})"
        )
        assert any(t.vport == 65535 and t.dest == q.first for t in q.templates), (
            f"no invalidated template (port 65535) to {q.first}: {q.templates}"
        )


SCOPES = ("client-block", "all-ports", "fwmark")


@pytest.fixture(scope="module", params=SCOPES)
def scope(request: pytest.FixtureRequest, state_table_mode: Mode, cluster: Cluster) -> ScopeRecord:
    if request.param == "fwmark":
        if shutil.which("nft") is None:
            pytest.skip("nft(8) is missing: firewall marks need nftables")
        if not state_table_mode.reply_via_director:
            pytest.skip(f"{state_table_mode.title}: a real server would have to hold every "
                        "marked destination address itself")  # fmt: skip
    return persistence_scope(cluster, state_table_mode, request.param)


def test_one_template_covers_a_block_all_ports_or_a_mark(scope: ScopeRecord) -> None:
    """What one template covers: with ``-M`` two source addresses of one block share it
    (the template's client is the block's first address); a port-0 service's template
    covers every port (its port is 0); a firewall-mark service's covers every marked
    destination (protocol IP, the mark as its address, port 0). So all three
    connections go to one real server, through one template.

    Source: ipvsadm(8) -p, -M, -f, "port 0"; ip_vs_core.c ip_vs_sched_persist (snet
    masked with svc->netmask; vport 0 for a port-0 service; the fwmark as vaddr and
    IPPROTO_IP for a firewall-mark service).
    """
    s = scope
    assert len(s.servers) == 1, f"one template should hold them on one server: {s.connections}"
    assert len(s.templates) == 1, f"templates: {s.templates}"
    [t] = s.templates
    assert t.dest in s.servers, t
    assert t.client == s.holder, f"the template's client is {t.client}, not {s.holder}"
    if s.scope != "client-block":
        assert t.vport == 0, f"a {s.scope} template's port is 0, not {t.vport}"
    if s.scope == "fwmark":
        assert (t.protocol, t.vaddr) == ("IP", str(ipaddress.ip_address(SCOPE_MARK))), t


@pytest.fixture(scope="module")
def sip(cluster: Cluster) -> SipRecord:
    if reason := missing_module("ip_vs_pe_sip", needed_by="the SIP persistence engine"):
        pytest.skip(reason)
    return sip_persistence(cluster, MODES["nat"])


def test_the_sip_engine_keeps_a_call_on_one_real_server(sip: SipRecord) -> None:
    """With ``--pe sip`` a template is keyed on the client block and the Call-ID: the
    datagrams of one call go to one real server from any address of the block and any
    port, and a second call from the same clients is scheduled on its own (rr's next
    choice), where plain persistence would keep it on the first call's server.

    Source: ipvsadm(8) --pe; net/netfilter/ipvs/ip_vs_pe_sip.c (ip_vs_sip_fill_param:
    the Call-ID as persistence data; ip_vs_sip_ct_match).
    """
    a, b = sip.servers_of("lvstb-call-a"), sip.servers_of("lvstb-call-b")
    assert a == {sip.model[0]}, (
        f"call A went to {sorted(a)}; rr's first is {sip.model[0]}: {sip.calls}"
    )
    assert b == {sip.model[1]}, (
        f"call B went to {sorted(b)}; rr's next is {sip.model[1]}: {sip.calls}"
    )
