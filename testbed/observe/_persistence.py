"""Persistent services: the template that keeps a client on one real server.

With ``ipvsadm -p TIMEOUT`` the first connection of a client is scheduled and
creates a template entry (client port 0) naming the real server; the client's
later connections follow the template, and each one restarts its timer at
TIMEOUT. The template leaves the table once its timer runs out with no
connection left that it controls (a template whose timer fires while it
still controls one is kept 60 s more); the client is then scheduled afresh.
A template to a real server of weight 0 stays valid unless
net.ipv4.vs.expire_quiescent_template is 1, in which case it is
invalidated (its ports rewritten to 65535) at the client's next connection.
Connections here are opened from the client's namespace and closed with an
RST, so their own entries go after CLOSE's 10 s.
Sources: ipvsadm(8) -p; net/netfilter/ipvs/ip_vs_core.c ip_vs_sched_persist;
ip_vs_conn.c (ip_vs_conn_expire, ip_vs_check_template,
expire_quiescent_template); ipvs-sysctl.rst expire_quiescent_template.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from scapy.layers.inet import UDP
from scapy.packet import Raw

from ..cluster import Cluster
from ..ipvs import read_connections
from ..net import Connector
from ..registry import Mode
from ..util import TestbedError, wait_until
from ._fwmark import marked_block
from ._icmp import inject
from ._ports import fresh_client_port
from ._records import record, record_kind
from ._tcp_states import dest_of, listening, rr_choices

PERSISTENCE_S = 15  # longer than CLOSE's 10 s: the template outlives its connections
# each experiment's service on a port of its own: a template outlives its service, and
# a real server re-added to the same VIP:port is revived from the trash with it
# (ip_vs_ctl.c ip_vs_trash_get_dest), so a reused port would inherit old templates
_PORTS = itertools.count(8700)


@dataclass(frozen=True, kw_only=True)
class TemplateView:
    """A template entry as the director's table shows it."""

    dest: str  # the real server's name ("?" for an address of none)
    state: str
    expires: int
    vport: int  # 65535 once invalidated; 0 for a port-0 or fwmark service
    client: str = ""  # the client address, or its block's first address with -M
    vaddr: str = ""  # the VIP; a fwmark service's is the mark as an address
    protocol: str = ""  # "IP" for a fwmark service's template


# ip_vs_check_template rewrites an invalidated template's ports to this
_INVALIDATED = 0xFFFF


def _templates(cluster: Cluster, client: str) -> list[TemplateView]:
    """The client's templates for the current service (its port; 0 for a port-0 or
    fwmark service; or invalidated): a template outlives its experiment, whose
    service had a port of its own."""
    names = {str(r.ip): r.name for r in cluster.spec.real_servers}
    service = cluster.spec.service
    ports = {service.port, _INVALIDATED} | ({0} if service.fwmark else set())
    found = read_connections(cluster.pid(cluster.spec.active.name), client=(client, 0))
    found = [c for c in found if c.virtual[1] in ports]
    return [TemplateView(dest=names.get(c.dest[0], "?"), state=c.state, expires=c.expires,
                         vport=c.virtual[1], client=c.client[0], vaddr=c.virtual[0],
                         protocol=c.protocol) for c in found]  # fmt: skip


@dataclass
class _Session:
    cluster: Cluster
    connector: Connector

    def connect(self, source: str | None = None, to: tuple[str, int] | None = None) -> str:
        """One connection from a fresh port of the first client (or its address
        ``source``) to the service (or ``to``), reset at once: the real server its entry
        names."""
        spec = self.cluster.spec
        client = source or str(spec.clients[0].ip)
        port = fresh_client_port(self.cluster)
        sock = self.connector.open(client, port, to or (str(spec.service.vip), spec.service.port))
        rs, state = dest_of(self.cluster, (client, port))
        sock.close()  # SO_LINGER 0: an RST
        return rs if state != "(none)" else "(no entry)"


@contextlib.contextmanager
def _persistent(cluster: Cluster, mode: Mode, timeout: int, *, ports: tuple[int, ...] = (),
                **service: object) -> Iterator[_Session]:  # fmt: skip
    """A persistent rr service (changed by ``service``), every real server listening on
    its port (or on ``ports``), a connector in the first client."""
    spec = cluster.base_spec.with_service(**{"mode": mode.name, "protocol": "tcp",
                                             "scheduler": "rr", "port": next(_PORTS),
                                             "nat_port": None, "persistence": timeout,
                                             **service})  # fmt: skip
    cluster.configure(spec)
    servers = [r.name for r in spec.real_servers]
    family = spec.service.family
    with contextlib.ExitStack() as stack:
        for port in ports or (spec.service.real_port,):
            stack.enter_context(listening(cluster, servers, family, port))
        yield _Session(cluster, stack.enter_context(Connector(cluster.pid(spec.clients[0].name))))


@record_kind("persistence")
@dataclass(frozen=True, kw_only=True)
class PersistenceRecord:
    """One client's connections to a persistent service, before and after its template
    expired."""

    key: str  # the mode
    timeout: int  # ipvsadm -p
    model: list[str]  # rr's first two choices
    held: list[str]  # the real server of each connection while the template lived
    template: list[TemplateView] = field(default_factory=list)  # right after them
    gone_after_s: float | None = None  # from the last connection until the template left
    after: str = ""  # the real server of the next connection


def persistence_lifetime(cluster: Cluster, mode: Mode, *, timeout: int = PERSISTENCE_S,
                         connections: int = 3) -> PersistenceRecord:  # fmt: skip
    """``connections`` connections of one client, its template, the template's expiry,
    and the client's next connection."""
    client = str(cluster.base_spec.clients[0].ip)
    with _persistent(cluster, mode, timeout) as session:
        model = rr_choices(cluster, 2)
        held = [session.connect() for _ in range(connections)]
        last = time.monotonic()
        template = _templates(cluster, client)
        gone = wait_until(lambda: not _templates(cluster, client), timeout=timeout + 75,
                          interval=0.5)  # fmt: skip
        gone_after = time.monotonic() - last if gone else None
        after = session.connect()
    return record(
        PersistenceRecord(
            key=mode.name,
            timeout=timeout,
            model=model,
            held=held,
            template=template,
            gone_after_s=None if gone_after is None else round(gone_after, 1),
            after=after,
        )
    )


@record_kind("quiescent-template")
@dataclass(frozen=True, kw_only=True)
class QuiescentRecord:
    """A client's template to a real server set to weight 0, and its next connection."""

    key: str  # "expire_quiescent_template=<0|1>"
    sysctl: int
    first: str  # the real server of the first connection (the template's)
    second: str  # the real server of the connection after its weight went to 0
    templates: list[TemplateView] = field(default_factory=list)  # after the second


def quiescent_template(cluster: Cluster, mode: Mode, expire: int) -> QuiescentRecord:
    """With expire_quiescent_template = ``expire``: a connection, its real server set to
    weight 0, and a second connection of the same client."""
    director = cluster.base_spec.active.name
    sysctl = "net.ipv4.vs.expire_quiescent_template"
    before = cluster.run(director, f"sysctl -n {sysctl}").strip()
    client = str(cluster.base_spec.clients[0].ip)
    try:
        cluster.run(director, f"sysctl -qw {sysctl}={expire}")
        with _persistent(cluster, mode, PERSISTENCE_S) as session:
            first = session.connect()
            rs = next(r for r in cluster.spec.real_servers if r.name == first)
            cluster.ipvs.set_weight(cluster.spec.service, rs, 0)
            second = session.connect()
            templates = _templates(cluster, client)
    finally:
        cluster.run(director, f"sysctl -qw {sysctl}={before}")
    return record(
        QuiescentRecord(
            key=f"{mode.name}-expire_quiescent_template={expire}",
            sysctl=expire,
            first=first,
            second=second,
            templates=templates,
        )
    )


# -- what one template covers -----------------------------------------------------------------

SCOPE_MARK = 0x43  # the firewall mark of the fwmark scope's destination block
_SCOPE_PORTS = (9200, 9201)  # the ports a port-0 service's connections go to
_SCOPE_RUNS = itertools.count()


@record_kind("persistence-scope")
@dataclass(frozen=True, kw_only=True)
class ScopeRecord:
    """Connections that differ in source address, destination address or port, to one
    persistent service whose template covers them all."""

    key: str  # "<mode>-<scope>"
    scope: str  # client-block, all-ports, fwmark
    connections: list[str]  # "source -> destination:port = real server"
    holder: str  # the client address the template should carry (a block's first with -M)
    templates: list[TemplateView] = field(default_factory=list)

    @property
    def servers(self) -> set[str]:
        return {c.rsplit(" = ", 1)[1] for c in self.connections}


def persistence_scope(cluster: Cluster, mode: Mode, scope: str) -> ScopeRecord:
    """Three connections of one client to a persistent rr service, differing in what
    ``scope`` lets one template cover: client-block (``-M``: two source addresses in
    one block), all-ports (a port-0 service: two ports), fwmark (a firewall-mark
    service: three destination addresses). Each connection is reset at once."""
    spec = cluster.base_spec
    family = spec.service.family
    vip = str(spec.service.vip)
    # each experiment's own pair of client addresses, one /31 (/127) block: a template
    # outlives its experiment, and another's must not be taken for this one's
    first = 2 * next(_SCOPE_RUNS)
    a, b = cluster.client_addresses(spec.clients[0].name, first + 2, spec=spec)[first:]
    block = ipaddress.ip_network(f"{a}/{family.host_prefix - 1}", strict=False)
    if ipaddress.ip_address(b) not in block:
        raise TestbedError(f"client addresses {a} and {b} are not one /{block.prefixlen}")
    holder = a
    with contextlib.ExitStack() as stack:
        if scope == "client-block":
            session = stack.enter_context(
                _persistent(cluster, mode, PERSISTENCE_S, persistence_prefix=block.prefixlen)
            )
            port = cluster.spec.service.port
            flows = [(a, (vip, port)), (b, (vip, port)), (a, (vip, port))]
            holder = str(block.network_address)
        elif scope == "all-ports":
            session = stack.enter_context(
                _persistent(cluster, mode, PERSISTENCE_S, port=0, ports=_SCOPE_PORTS)
            )
            flows = [(a, (vip, p)) for p in (*_SCOPE_PORTS, _SCOPE_PORTS[0])]
        else:
            destinations = stack.enter_context(marked_block(cluster, family, mark=SCOPE_MARK))
            port = next(_PORTS)
            session = stack.enter_context(
                _persistent(cluster, mode, PERSISTENCE_S, fwmark=SCOPE_MARK, port=port)
            )
            flows = [(a, (d, port)) for d in destinations[:3]]
        done = [f"{src} -> {dst}:{p} = {session.connect(src, (dst, p))}" for src, (dst, p) in flows]
        templates = _templates(cluster, holder)
    return record(ScopeRecord(key=f"{mode.name}-{scope}", scope=scope, connections=done,
                              holder=holder, templates=templates))  # fmt: skip


# -- the SIP persistence engine ---------------------------------------------------------------


def sip_datagram(call_id: str) -> bytes:
    """A SIP request whose Call-ID header ip_vs_pe_sip reads (RFC 3261 section 8.1.1.4)."""
    return (f"OPTIONS sip:lvs@testbed.invalid SIP/2.0\r\nCall-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()  # fmt: skip


@record_kind("sip-persistence")
@dataclass(frozen=True, kw_only=True)
class SipRecord:
    """SIP datagrams of two calls, each call from two client addresses and ports, to a
    persistent UDP service with the SIP engine."""

    key: str  # the mode
    model: list[str]  # rr's first two choices
    calls: list[str]  # "call-id from address:port = real server", in sending order

    def servers_of(self, call_id: str) -> set[str]:
        return {c.rsplit(" = ", 1)[1] for c in self.calls if c.startswith(f"{call_id} ")}


def sip_persistence(cluster: Cluster, mode: Mode) -> SipRecord:
    """Datagrams of calls A and B, each sent from two client addresses of one /31 block
    (other ports each time), to a service with ``-p -M /31 --pe sip``; which real server
    got each. Plain persistence would send both calls of a client to one server."""
    first = 2 * next(_SCOPE_RUNS)
    spec = cluster.base_spec
    a, b = cluster.client_addresses(spec.clients[0].name, first + 2, spec=spec)[first:]
    # the engine keys a template on the client (masked by -M) and the Call-ID
    # (ip_vs_pe_sip.c ip_vs_sip_ct_match): a /31 block lets both addresses share a call's
    block = spec.service.family.host_prefix - 1
    spec = spec.with_service(mode=mode.name, protocol="udp", scheduler="rr", port=next(_PORTS),
                             nat_port=None, persistence=PERSISTENCE_S,
                             persistence_prefix=block, persistence_engine="sip")  # fmt: skip
    cluster.configure(spec)
    model = rr_choices(cluster, 2)
    s, net = spec.service, spec.service.family.layer
    sent = [(call, src, fresh_client_port(cluster))
            for call in ("lvstb-call-a", "lvstb-call-b") for src in (a, b)]  # fmt: skip
    calls = []
    for call, src, port in sent:  # one at a time: each call's first datagram makes its template
        datagram = net(src=src, dst=str(s.vip)) / UDP(sport=port, dport=s.port)
        shot = inject(cluster, [datagram / Raw(sip_datagram(call))], key=f"sip-{call}-{src}",
                      settle=0.5)  # fmt: skip
        got = [r.name for r in spec.real_servers if any(
            call.encode() in bytes(f.packet) for f in shot.at(f"{r.name}-eth0", "in"))]  # fmt: skip
        calls.append(f"{call} from {src}:{port} = {','.join(got) or '(nobody)'}")
    return record(SipRecord(key=mode.name, model=model, calls=calls))
