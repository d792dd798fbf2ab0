"""Persistence engines: what a persistent service's template is keyed on besides the
client address (ipvsadm(8) --pe; net/netfilter/ipvs/ip_vs_pe.c)."""

from __future__ import annotations

from dataclasses import dataclass

from ._registry import Registry


@dataclass(frozen=True)
class PersistenceEngine:
    name: str  # as ipvsadm --pe and IPVS_SVC_ATTR_PE_NAME write it
    module: str  # ip_vs_pe.c loads ip_vs_pe_<name> on demand
    protocols: tuple[str, ...]  # the transports whose payload it can read
    source: str


PERSISTENCE_ENGINES: Registry[PersistenceEngine] = Registry("persistence engine")

SIP = PERSISTENCE_ENGINES.register(
    PersistenceEngine(
        name="sip",
        module="ip_vs_pe_sip",
        # ip_vs_sip_fill_param: "!retc || iph.protocol != IPPROTO_UDP" -> -EINVAL
        protocols=("udp",),
        source="net/netfilter/ipvs/ip_vs_pe_sip.c (templates keyed on the Call-ID)",
    )
)
