"""Driving the load tools of loadgen/ on a cluster: holders, connection rates, iperf3.

The tools are standalone programs that print JSON, so a test, the bench and
a lab user run the same thing; this package starts them in the right
namespaces and reads what they print::

    with Holders(cluster, targets=["203.0.113.100:80"], plan=spread_sources(cluster, 20000),
                 hold=5) as holders:
        ramped = holders.wait_ramped(timeout=600)
        result = holders.release(timeout=120)
"""

from ._drivers import (
    CONNECT_TOOLS,
    CONNS_PER_ADDRESS,
    IPERF_PORT,
    Holders,
    IperfResult,
    connect_rate,
    iperf,
    iperf_servers,
    parse_iperf,
    prepare_for_scale,
    route_clients_inside,
    spread_sources,
    strip_samples,
)
from ._ftp import FTP_PORT, WHO, FtpServers, vsftpd_config
from ._stream_servers import AGENT_PORT, HOLD_PORT, STREAM_PORT, ensure_stream_servers

__all__ = [
    "AGENT_PORT",
    "CONNECT_TOOLS",
    "CONNS_PER_ADDRESS",
    "FTP_PORT",
    "HOLD_PORT",
    "IPERF_PORT",
    "STREAM_PORT",
    "WHO",
    "FtpServers",
    "Holders",
    "IperfResult",
    "connect_rate",
    "ensure_stream_servers",
    "iperf",
    "iperf_servers",
    "parse_iperf",
    "prepare_for_scale",
    "route_clients_inside",
    "spread_sources",
    "strip_samples",
    "vsftpd_config",
]
