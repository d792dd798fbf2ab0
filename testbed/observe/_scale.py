"""Many simultaneous connections through the VIP: opened, held, counted by the director."""

from __future__ import annotations

from ..cluster import Cluster
from ..load import Holders, spread_sources, strip_samples
from ..util import wait_until
from ._records import ScaleRecord, record


def active_per_server(cluster: Cluster) -> list[int]:
    """ActiveConn of each real server of the service, in the kernel's list order."""
    return [d.active for d in cluster.service_state().dests]


def hold_through_vip(cluster: Cluster, *, connections: int, hold: float) -> ScaleRecord:
    """Open ``connections`` from every client, hold them ``hold`` s, read the director
    while all are open, release; the holders' reports and the director's counts."""
    service = cluster.spec.service
    with Holders(
        cluster,
        targets=[service.endpoint],
        plan=spread_sources(cluster, connections),
        hold=hold,
    ) as holders:
        ramped = holders.wait_ramped(timeout=1200)
        # the client's last ACKs may still be on their way to the director
        wait_until(
            lambda: sum(active_per_server(cluster)) >= ramped["held"], timeout=30, interval=0.5
        )
        active = active_per_server(cluster)
        result = holders.release(timeout=600)
    return record(
        ScaleRecord(
            key=service.mode,
            connections=connections,
            ipvs_active=active,
            ramped=strip_samples(ramped) | {"ramp": []},
            result=strip_samples(result) | {"ramp": []},
        )
    )
