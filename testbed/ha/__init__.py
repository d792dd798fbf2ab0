"""High availability: two directors under keepalived VRRP or heartbeat, and the rules they obey.

``_vrrp`` holds the pure arithmetic (RFC 3768/5798 skew and master-down,
takeover windows per fault, gratuitous-ARP expectations); the pairs run the
real daemons, inflict faults and put everything back::

    with HaPair(cluster, vrrp=Vrrp(version=3, advert_int=0.3), sync="ipvsadm") as ha:
        fault_at = ha.fail("kill")
        ha.keepalived[ha.names[1]].wait_state("MASTER", timeout=10, after=fault_at)
"""

from ._heartbeat import (
    GARP_INTERVAL,
    GARP_REPEAT,
    HeartbeatNode,
    HeartbeatPair,
    HeartbeatTiming,
    render_ha_cf,
    render_haresources,
    takeover_decisions,
)
from ._keepalived import INSTANCE, Keepalived, Vrrp, config_block, render
from ._pair import SYNC_MODES, DirectorPair, HaPair
from ._vrrp import (
    ANNOUNCED_FAULTS,
    FAULTS,
    SILENT_FAULTS,
    GarpExpectation,
    TakeoverWindow,
    bursts,
    master_down_interval,
    skew_time,
    takeover_window,
)

__all__ = [
    "ANNOUNCED_FAULTS",
    "FAULTS",
    "GARP_INTERVAL",
    "GARP_REPEAT",
    "INSTANCE",
    "SILENT_FAULTS",
    "SYNC_MODES",
    "DirectorPair",
    "GarpExpectation",
    "HaPair",
    "HeartbeatNode",
    "HeartbeatPair",
    "HeartbeatTiming",
    "Keepalived",
    "TakeoverWindow",
    "Vrrp",
    "bursts",
    "config_block",
    "master_down_interval",
    "render",
    "render_ha_cf",
    "render_haresources",
    "skew_time",
    "takeover_decisions",
    "takeover_window",
]
