"""The system under test's table: IPVS over netlink, ipvsadm's view, the /proc tables.

The testbed configures IPVS only through generic netlink, the API ipvsadm
itself uses; ``ipvsadm -Ln`` is parsed separately as an independent reader::

    with Ipvs(netns=f"/proc/{director_pid}/ns/net") as ipvs:
        ipvs.apply(spec.service, spec.real_servers)
        state = ipvs.service()               # ServiceState, counters included
    read_connections(director_pid)           # [Conn(client=..., dest=..., state=...)]
"""

from ._conntable import Conn, DestCounters, read_connections, read_dest_counters
from ._contract import expected_state, service_key, settings
from ._ipvsadm import (
    KERNEL_PROTOCOLS,
    TIMEOUTS_COMMAND,
    IpvsadmRow,
    Timeouts,
    ipvsadm_commands,
    parse_ipvsadm,
    parse_timeouts,
    rows_from_netlink,
)
from ._netlink import DestState, Ipvs, ServiceState, Stats, method_name, service_flags
from ._sysctls import SYSCTL_DIR, SYSCTLS, Sysctl

__all__ = [
    "KERNEL_PROTOCOLS",
    "SYSCTLS",
    "SYSCTL_DIR",
    "TIMEOUTS_COMMAND",
    "Conn",
    "DestCounters",
    "DestState",
    "Ipvs",
    "IpvsadmRow",
    "ServiceState",
    "Stats",
    "Sysctl",
    "Timeouts",
    "expected_state",
    "ipvsadm_commands",
    "method_name",
    "parse_ipvsadm",
    "parse_timeouts",
    "read_connections",
    "read_dest_counters",
    "rows_from_netlink",
    "service_flags",
    "service_key",
    "settings",
]
