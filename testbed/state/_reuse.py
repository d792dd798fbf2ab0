"""What the director does with a new connection that finds an old entry of its own
client address and port (source-port reuse): ip_vs_core.c ip_vs_in_hook.

A SYN (``is_new_conn``) that matches an entry is rescheduled, the old entry
expired at once, when expire_nodest_conn is on and the entry's real server has
weight 0, or when conn_reuse_mode is non-zero and the old connection is
expected to be over (is_new_conn_expected): TCP in TIME_WAIT or CLOSE, or,
with bit 2 of conn_reuse_mode, in FIN_WAIT on an entry that never saw output
(DR, TUN); never for an entry controlled by another (persistence, FTP data).
Otherwise the SYN follows the old entry to its real server.
"""

from __future__ import annotations


def new_conn_expected(state: str, *, no_output: bool, conn_reuse_mode: int,
                      controlled: bool = False) -> bool:  # fmt: skip
    """is_new_conn_expected() for a TCP entry."""
    if controlled:
        return False
    return state in ("TIME_WAIT", "CLOSE") or (
        bool(conn_reuse_mode & 2) and state == "FIN_WAIT" and no_output
    )


def reschedules(state: str, *, no_output: bool, conn_reuse_mode: int,
                expire_nodest_conn: int = 0, weight: int = 1,
                controlled: bool = False) -> bool:  # fmt: skip
    """Whether a SYN reusing an entry's client port is scheduled afresh."""
    if expire_nodest_conn and weight == 0:
        return True
    return bool(conn_reuse_mode) and new_conn_expected(
        state, no_output=no_output, conn_reuse_mode=conn_reuse_mode, controlled=controlled
    )
