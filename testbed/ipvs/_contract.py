"""What the kernel should report for a service it was given: the control plane as a
contract (ip_vs_ctl.c ip_vs_genl_fill_service / ip_vs_genl_fill_dest).

    >>> expected_state(spec.service, spec.real_servers) == settings(ipvs.service())
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from ..registry import TUNNEL_CHECKSUMS, TUNNELS, family_of
from ..topology import RealServer, Service
from ._netlink import (
    IP_VS_SVC_F_HASHED,
    DestState,
    ServiceState,
    Stats,
    service_flags,
)

# an address the kernel reports for a fwmark service (no IPVS_SVC_ATTR_ADDR): none
_NO_ADDRESS = ""


def service_key(state: ServiceState) -> tuple[int, int, int, str, int]:
    """What identifies a service in the kernel: family and fwmark, or family, protocol,
    address and port (ip_vs_ctl.c __ip_vs_service_find / __ip_vs_svc_fwm_find)."""
    return (state.family, state.fwmark, state.protocol, state.addr, state.port)


def _expected_dest(service: Service, rs: RealServer) -> DestState:
    mode = service.forwarding
    tunnel = {}
    if mode.encapsulates:
        tunnel = {
            "tunnel_type": TUNNELS[rs.tunnel].ipvs_type,
            "tunnel_port": rs.tunnel_port or TUNNELS[rs.tunnel].port,
            "tunnel_flags": TUNNEL_CHECKSUMS[rs.tunnel_checksum].flags,
        }
    return DestState(
        addr=str(rs.ip),
        port=service.real_port,
        method=mode.name,
        weight=rs.weight,
        active=0,
        inactive=0,
        persistent=0,
        upper_threshold=rs.upper_threshold,
        lower_threshold=rs.lower_threshold,
        stats=Stats(),
        address_family=family_of(rs.ip).af,
        **tunnel,
    )


def expected_state(service: Service, real_servers: Iterable[RealServer]) -> ServiceState:
    """The service as the kernel should report it right after it was set, counters 0.

    The kernel adds IP_VS_SVC_F_HASHED to the flags of a service in its table, and
    reports a fwmark service by its mark alone (no protocol, address or port).
    """
    family = service.family
    marked = bool(service.fwmark)
    return ServiceState(
        addr=_NO_ADDRESS if marked else str(service.vip),
        port=0 if marked else service.port,
        protocol=0 if marked else service.transport.number,
        scheduler=service.scheduler,
        persistent=bool(service.persistence),
        timeout=service.persistence,
        stats=Stats(),
        dests=tuple(sorted((_expected_dest(service, rs) for rs in real_servers), key=_dest_key)),
        flags=service_flags(service) | IP_VS_SVC_F_HASHED,
        family=family.af,
        fwmark=service.fwmark,
        netmask=family.ipvs_netmask(service.persistence_block),
        persistence_engine=service.persistence_engine,
    )


def _dest_key(d: DestState) -> tuple[str, int]:
    return (d.addr, d.port)


def settings(state: ServiceState) -> ServiceState:
    """The state without what traffic changes (counters, connection counts), its real
    servers in address order (the kernel lists the newest first)."""
    quiet = [dataclasses.replace(d, active=0, inactive=0, persistent=0, stats=Stats())
             for d in state.dests]  # fmt: skip
    return dataclasses.replace(state, stats=Stats(), dests=tuple(sorted(quiet, key=_dest_key)))
