"""Firewall-mark services: nftables on the director marks every packet to a block of
destination addresses, and one IPVS service takes the mark (ipvsadm -f).

The block is the testbed's own (a spare documentation block no topology network
overlaps): the director holds all of it as local (``ip route add local``, so IPVS's
LOCAL_IN hook sees the packets) and the client routes it to the active director.
Schedulers that look at the destination address (dh, lblc, lblcr) can then be
driven across many destinations through one service::

    with marked_block(cluster, family, mark=0x42) as destinations:
        harness.configure("dh", fwmark=0x42)
        harness.connect(harness.flow(daddr=destinations[7]))

Sources: ipvsadm(8) -f; nft(8) ``meta mark set``; ip-route(8) ``local``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
from collections.abc import Iterator

from ..cluster import Cluster
from ..registry import Family
from ..topology import ClusterSpec
from ..util import TestbedError

NFT_TABLE = "lvstb"  # the director's nftables table, the testbed's own
DESTINATIONS = 62  # addresses of the block the tests use


def spare_block(spec: ClusterSpec, family: Family) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The first of the family's spare blocks that no network of the topology touches."""
    view = spec.in_family(family)
    taken = [view.outside, view.inside]
    for text in family.spare_blocks:
        block = ipaddress.ip_network(text)
        if not any(block.overlaps(n) for n in taken):  # type: ignore[arg-type]
            return block
    raise TestbedError(f"topology {spec.name!r} leaves no spare {family.title} block")


@contextlib.contextmanager
def marked_block(cluster: Cluster, family: Family, *, mark: int) -> Iterator[list[str]]:
    """Packets of any protocol to the spare block marked ``mark`` on the active director,
    the block local there and routed to it from the first client; yields the block's
    first DESTINATIONS addresses. Everything is removed afterwards."""
    spec = cluster.spec.in_family(family)
    block = spare_block(cluster.base_spec, family)
    director, client = spec.active.name, spec.clients[0].name
    ip, nft = family.ip_option, family.nft_family
    table = f"{nft} {NFT_TABLE}"
    rules = (f"add table {table}; "
             f"add chain {table} pre {{ type filter hook prerouting priority mangle; }}; "
             f"add rule {table} pre {nft} daddr {block} meta mark set {mark:#x}")  # fmt: skip
    local = f"ip {ip} route add local {block} dev lo"
    undo_director = (f"nft delete table {table} 2>/dev/null; "
                     f"ip {ip} route del local {block} dev lo 2>/dev/null; true")  # fmt: skip
    cluster.run(director, undo_director, f"nft '{rules}'", local)
    try:
        cluster.run(client, f"ip {ip} route replace {block} via {spec.service.vip}")
        yield [str(a) for a in itertools.islice(block.hosts(), DESTINATIONS)]
    finally:
        cluster.run(client, f"ip {ip} route del {block} 2>/dev/null; true", check=False)
        cluster.run(director, undo_director, check=False)
