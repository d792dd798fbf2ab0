"""Transport protocols of IPVS services: numbers, names, packets and real traffic, once each.

An entry gives what the kernel and the tools call the protocol (IPPROTO_*,
ipvsadm -t/-u/--sctp-service, keepalived.conf "protocol"), the scapy layer
and the packets that open a connection and answer it (the oracle's
templates), and how the testbed makes real traffic of it: the real-server
program's option that serves it and a client command that makes one
connection per request. Sources: ipvsadm(8), keepalived.conf(5), RFC 9293
(TCP), RFC 768 (UDP), RFC 9260 (SCTP).

A UDP "connection" is what IPVS makes of it: the first datagram from a
client address and port is scheduled and creates an entry, the answer and
later datagrams follow it (net/netfilter/ipvs/ip_vs_proto_udp.c). The
request and answer datagrams are told apart by their payload
(loadgen.wire).
"""

from __future__ import annotations

import shlex
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from scapy.layers.inet import TCP, UDP
from scapy.layers.sctp import SCTP, SCTPChunkData, SCTPChunkInit, SCTPChunkInitAck
from scapy.packet import NoPayload, Packet, Raw

from loadgen.wire import ANSWER_START, REQUEST

from ._registry import Registry


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """One transport protocol, declared once."""

    name: str  # "tcp": topologies, test ids, ldirectord
    title: str  # "TCP": ipvsadm -Ln, keepalived.conf
    number: int  # IPPROTO_* (netlink IPVS_SVC_ATTR_PROTOCOL)
    ipvsadm_flag: str  # ipvsadm -A -t ...
    layer: type[Packet]  # scapy transport layer
    checksum: str  # its checksum field (left to offload on veth: not compared)
    checksum_offset: int  # that field's offset in the header (skb->csum_offset)
    # an Internet checksum (RFC 1071), which local and remote checksum offload
    # assume of a carried packet; SCTP's is a CRC32c
    internet_checksum: bool = True
    opening: Callable[[int, int], Packet]  # (sport, dport) -> a connection's first packet
    answer: Callable[[int, int], Packet]  # the server's first packet back
    is_opening: Callable[[Packet], bool]
    is_answer: Callable[[Packet], bool]
    server_option: str  # loadgen.server option serving it on a port
    # shell command: ``count`` requests to endpoint, one connection each, printing
    # the answering real server's name per line ("" for a failed one)
    client: Callable[[str, int], str]
    client_port_option: str  # appended to a one-request client command: its source port
    modules: tuple[str, ...] = ()  # what clients and servers need to speak it
    datagrams: bool = False  # connectionless: a "connection" is a datagram's address and port
    # a packet of a connection already under way (None: every datagram may open one), and
    # the sysctl that lets the director schedule such a packet (ip_vs_proto_*.c
    # *_conn_schedule: only an opening packet is scheduled unless it is set)
    midstream: Callable[[int, int], Packet] | None = None
    sloppy_sysctl: str = ""

    def ports(self, pkt: Packet) -> tuple[int, int]:
        """(sport, dport) of a packet of this protocol (the carried one, if encapsulated)."""
        layer = innermost_header(pkt, self.layer)
        return int(layer.sport), int(layer.dport)


PROTOCOLS: Registry[Protocol] = Registry("protocol")


def _curl(endpoint: str, count: int) -> str:
    url = f"http://{endpoint}/"
    return f"curl -s --max-time 5 -w '\\n' {' '.join([url] * count)}"


def _ask(protocol: str) -> Callable[[str, int], str]:
    def command(endpoint: str, count: int) -> str:
        argv = [sys.executable, "-m", "loadgen.ask", "--protocol", protocol,
                "--count", str(count), endpoint]  # fmt: skip
        return shlex.join(argv)

    return command


def innermost_header(pkt: Packet, layer: type[Packet]) -> Packet | None:
    """The last ``layer`` header of a packet: the carried one when a tunnel wraps it in
    the same protocol (GUE is UDP around UDP)."""
    found, current = None, pkt
    while not isinstance(current, NoPayload):
        if type(current) is layer:
            found = current
        current = current.payload
    return found


def _payload_starts(pkt: Packet, layer: type[Packet], start: bytes) -> bool:
    carried = innermost_header(pkt, layer)
    return carried is not None and bytes(carried.payload).startswith(start)


PROTOCOLS.register(
    Protocol(
        name="tcp",
        title="TCP",
        number=socket.IPPROTO_TCP,
        ipvsadm_flag="-t",
        layer=TCP,
        checksum="chksum",
        checksum_offset=16,
        opening=lambda sport, dport: TCP(sport=sport, dport=dport, flags="S"),
        answer=lambda sport, dport: TCP(sport=sport, dport=dport, flags="SA"),
        is_opening=lambda pkt: TCP in pkt and pkt[TCP].flags == "S",
        is_answer=lambda pkt: TCP in pkt and pkt[TCP].flags == "SA",
        server_option="--port",
        client=_curl,
        client_port_option="--local-port",
        midstream=lambda sport, dport: TCP(sport=sport, dport=dport, flags="A", seq=1, ack=1),
        sloppy_sysctl="net.ipv4.vs.sloppy_tcp",
    )
)

PROTOCOLS.register(
    Protocol(
        name="udp",
        title="UDP",
        number=socket.IPPROTO_UDP,
        ipvsadm_flag="-u",
        layer=UDP,
        checksum="chksum",
        checksum_offset=6,
        opening=lambda sport, dport: UDP(sport=sport, dport=dport) / Raw(load=REQUEST),
        answer=lambda sport, dport: UDP(sport=sport, dport=dport),
        is_opening=lambda pkt: _payload_starts(pkt, UDP, REQUEST),
        is_answer=lambda pkt: _payload_starts(pkt, UDP, ANSWER_START),
        server_option="--udp",
        client=_ask("udp"),
        client_port_option="--sport",
        datagrams=True,
    )
)

PROTOCOLS.register(
    Protocol(
        name="sctp",
        title="SCTP",
        number=socket.IPPROTO_SCTP,
        ipvsadm_flag="--sctp-service",
        layer=SCTP,
        checksum="chksum",  # CRC32c over the whole packet (RFC 9260 appendix A)
        checksum_offset=8,
        internet_checksum=False,
        opening=lambda sport, dport: SCTP(sport=sport, dport=dport) / SCTPChunkInit(),
        answer=lambda sport, dport: SCTP(sport=sport, dport=dport) / SCTPChunkInitAck(),
        is_opening=lambda pkt: SCTPChunkInit in pkt,
        is_answer=lambda pkt: SCTPChunkInitAck in pkt,
        server_option="--sctp",
        client=_ask("sctp"),
        client_port_option="--sport",
        modules=("sctp",),
        # a DATA chunk of an association whose INIT the director never saw
        midstream=lambda sport, dport: (
            SCTP(sport=sport, dport=dport, tag=0x1CEB00DA) / SCTPChunkData(tsn=1, data=REQUEST)
        ),
        sloppy_sysctl="net.ipv4.vs.sloppy_sctp",
    )
)
