"""Reference models of IPVS connection state (pure Python, no root needed).

The TCP state of an entry as ip_vs_proto_tcp.c moves it::

    from testbed.state import walk, timeouts

    # a client-side close through NAT: the director sees both directions
    walk(True, [("S", "in"), ("SA", "out"), ("A", "in"),
                ("FA", "in"), ("A", "out"), ("FA", "out"), ("A", "in")])
    # -> [..., 'ESTABLISHED', 'CLOSE_WAIT', 'CLOSE_WAIT', 'TIME_WAIT', 'TIME_WAIT']
    timeouts(tcp=900, tcpfin=30)["FIN_WAIT"]   # -> 30, after ipvsadm --set 900 30 300
"""

from ._reuse import new_conn_expected, reschedules
from ._tcp import (
    ACTIVE,
    DEFAULT_TIMEOUTS,
    STATES,
    TABLES,
    TcpEntry,
    flag_row,
    timeouts,
    walk,
)

__all__ = [
    "ACTIVE",
    "DEFAULT_TIMEOUTS",
    "STATES",
    "TABLES",
    "TcpEntry",
    "flag_row",
    "new_conn_expected",
    "reschedules",
    "timeouts",
    "walk",
]
