"""What a mode's or tunnel's setup hook may know about the host it prepares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._family import Family, family_of

if TYPE_CHECKING:
    from ._tunnel import Tunnel, TunnelChecksum


@dataclass(frozen=True, kw_only=True)
class RealServerHost:
    """One real server as the setup hooks see it (built by the cluster from its spec)."""

    name: str
    interface: str  # its one interface, "<name>-eth0"
    address: str  # its own: what the director forwards to (TUN: the tunnel's far end)
    vip: str  # the virtual service's address
    family: Family  # the VIP's family
    dip: str  # the director's inside address: NAT real servers' gateway
    router: str  # the default gateway otherwise
    tunnel: Tunnel  # how TUN reaches this real server
    tunnel_port: int = 0  # the tunnel's UDP port, where it has one (GUE)
    tunnel_checksum: TunnelChecksum | None = None  # None: the tunnel's plain option

    @property
    def vip_prefix(self) -> str:
        """The VIP as a single-address prefix, as it is put on a device."""
        return f"{self.vip}/{self.family.host_prefix}"

    @property
    def address_family(self) -> Family:
        """Its own address's family: the VIP's, or the other one where TUN carries the
        service over the other family (ip_vs_ctl.c: mixed families for TUN only)."""
        return family_of(self.address)


@dataclass(frozen=True, kw_only=True)
class DirectorHost:
    """One director as a mode's setup hook sees it."""

    name: str
    outside: str  # "<name>-eth0", facing clients
    inside: str  # "<name>-eth1", facing real servers
    family: Family
