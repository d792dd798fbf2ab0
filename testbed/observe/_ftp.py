"""One FTP download through the VIP, and how its data connection was made.

curl fetches ``who`` from the VIP with the way of opening the data connection
a test asks for; the banner names the real server of the control connection,
the file's content the one of the data connection, and a capture at the
client shows who the data connection was with. Sources: RFC 959 (PORT, PASV),
RFC 2428 (EPRT, EPSV), curl(1) (--disable-epsv, --ftp-port, --disable-eprt).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scapy.layers.inet import TCP

from ..cluster import Cluster
from ..ipvs import read_connections
from ..load import FTP_PORT, WHO
from ._records import record, record_kind


@dataclass(frozen=True, kw_only=True)
class FtpWay:
    """One way of opening FTP's data connection, as curl is told to take it."""

    name: str  # "pasv": test ids
    command: str  # the FTP command that opens it
    active: bool  # the server connects to the client (PORT, EPRT)
    curl: tuple[str, ...]  # curl options that make curl use it
    ipv4_only: bool = False  # PORT and PASV carry an IPv4 address

    @property
    def summary(self) -> str:
        return f"{self.command} ({'active' if self.active else 'passive'})"


FTP_WAYS = (
    FtpWay(name="pasv", command="PASV", active=False, curl=("--disable-epsv",), ipv4_only=True),
    FtpWay(name="epsv", command="EPSV", active=False, curl=()),
    FtpWay(
        name="port",
        command="PORT",
        active=True,
        curl=("--ftp-port", "-", "--disable-eprt"),
        ipv4_only=True,
    ),
    FtpWay(name="eprt", command="EPRT", active=True, curl=("--ftp-port", "-")),
)


@record_kind("ftp")
@dataclass(frozen=True, kw_only=True)
class FtpRecord:
    """One download: who served the control and the data connection, and how."""

    key: str  # "<way>-<family>"
    command: str
    active: bool  # the real server opened the data connection
    banner_server: str  # the real server whose banner greeted the client
    data_server: str  # the real server whose file came back ("" on failure)
    data_peer: str  # "addr:port" at the other end of the data connection, as the client saw it
    director_entries: list[str]  # the client's entries in the director's table afterwards
    curl_exit: int


_BANNER = re.compile(r"^< 220[ -](\S+)", re.MULTILINE)


def ftp_download(cluster: Cluster, way: FtpWay) -> FtpRecord:
    """Download ``who`` through the VIP the given way (the cluster configured for FTP)."""
    spec = cluster.spec
    client = spec.clients[0]
    host = f"[{spec.service.vip}]" if spec.service.family.version == 6 else str(spec.service.vip)
    url = f"ftp://{host}:{spec.service.port}/{WHO}"
    command = " ".join(["curl", "-sv", "--max-time", "20", *way.curl, url])
    with cluster.capture(f"{client.name}-eth0") as cap:
        out = cluster.run(client.name, f"{command} 2>&1; echo __curl=$?", check=False)
    body, _, code = out.rpartition("__curl=")
    banner = _BANNER.search(body)
    lines = [line for line in body.splitlines() if line and line[0] not in "<>*{}"]
    data = lines[-1].strip() if lines else ""
    net = spec.service.family.layer
    # the data connection's opening SYN: from the client (passive), or to it (active)
    peers = {
        f"{f.packet[net].src}:{f.packet[TCP].sport}" if way.active
        else f"{f.packet[net].dst}:{f.packet[TCP].dport}"
        for f in cap.frames()
        if TCP in f.packet and FTP_PORT not in (f.packet[TCP].sport, f.packet[TCP].dport)
        and f.packet[TCP].flags.S and f.direction == ("in" if way.active else "out")
    }  # fmt: skip
    entries = read_connections(cluster.pid(spec.active.name))
    return record(
        FtpRecord(
            key=f"{way.name}-{spec.service.family.name}",
            command=way.command,
            active=way.active,
            banner_server=banner[1] if banner else "",
            data_server=data if data in {r.name for r in spec.real_servers} else "",
            data_peer=", ".join(sorted(peers)),
            director_entries=[
                f"{c.client[0]}:{c.client[1]} -> {c.virtual[0]}:{c.virtual[1]} -> "
                f"{c.dest[0]}:{c.dest[1]} {c.state}"
                for c in entries
                if c.client[0] == str(client.ip) or c.dest[0] == str(client.ip)
            ],
            curl_exit=int(code.strip() or -1),
        )
    )
