"""The TCP state of an IPVS connection entry, as net/netfilter/ipvs/ip_vs_proto_tcp.c moves it.

IPVS does not follow TCP; it keeps its own small state per entry, moved by
each segment it forwards through one of three tables: INPUT (client to
real server, when the director also sees the replies), OUTPUT (real server
to client: NAT only) and INPUT-ONLY (an entry marked NOOUTPUT, which
every non-NAT destination is, ip_vs_ctl.c __ip_vs_update_dest, until an
output segment is seen). A segment's row is chosen by its first flag of
RST, SYN, FIN, ACK (tcp_state_idx); a segment with none of them puts the
entry in CLOSE. The entry's timer restarts at the new state's timeout at
every segment; ``ipvsadm --set tcp tcpfin`` sets ESTABLISHED's and
FIN_WAIT's. With net.ipv4.vs.secure_tcp in force a stricter set of tables
(tcp_states_dos) applies. The states ESTABLISHED, SYN_SENT, SYN_RECV and
SYNACK count as active connections of the real server, the rest inactive
(tcp_state_active_table).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# ip_vs_proto_tcp.c: state names in the kernel's order (IP_VS_TCP_S_*)
STATES = ("NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT", "CLOSE",
          "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK")  # fmt: skip
# tcp_timeouts, in seconds
DEFAULT_TIMEOUTS = {
    "NONE": 2, "ESTABLISHED": 15 * 60, "SYN_SENT": 2 * 60, "SYN_RECV": 60, "FIN_WAIT": 2 * 60,
    "TIME_WAIT": 2 * 60, "CLOSE": 10, "CLOSE_WAIT": 60, "LAST_ACK": 30, "LISTEN": 2 * 60,
    "SYNACK": 120,
}  # fmt: skip
ACTIVE = frozenset({"ESTABLISHED", "SYN_SENT", "SYN_RECV", "SYNACK"})  # tcp_state_active_table
FLAG_ROWS = ("syn", "fin", "ack", "rst")  # a table's rows, in the kernel's order
Table = Literal["input", "output", "input_only"]
Direction = Literal["in", "out"]


def _rows(text: str) -> dict[str, dict[str, str]]:
    """One table as the kernel writes it: a row per flag, a column per current state."""
    abbreviations = {"sNO": "NONE", "sES": "ESTABLISHED", "sSS": "SYN_SENT", "sSR": "SYN_RECV",
                     "sFW": "FIN_WAIT", "sTW": "TIME_WAIT", "sCL": "CLOSE", "sCW": "CLOSE_WAIT",
                     "sLA": "LAST_ACK", "sLI": "LISTEN", "sSA": "SYNACK"}  # fmt: skip
    table = {}
    for row, line in zip(FLAG_ROWS, text.strip().splitlines(), strict=True):
        cells = [abbreviations[c] for c in line.replace(",", " ").split()]
        table[row] = dict(zip(STATES, cells, strict=True))
    return table


# tcp_states[], transcribed column for column (sNO sES sSS sSR sFW sTW sCL sCW sLA sLI sSA)
TABLES: dict[str, dict[Table, dict[str, dict[str, str]]]] = {
    "normal": {
        "input": _rows("""
            sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR
            sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sTW
            sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES
            sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sSR"""),
        "output": _rows("""
            sSS, sES, sSS, sSR, sSS, sSS, sSS, sSS, sSS, sLI, sSR
            sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW
            sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES
            sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL"""),
        "input_only": _rows("""
            sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSR
            sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW
            sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES
            sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL"""),
    },
    # tcp_states_dos[]: in force while secure_tcp defends (ipvs-sysctl.rst secure_tcp)
    "secure": {
        "input": _rows("""
            sSR, sES, sES, sSR, sSR, sSR, sSR, sSR, sSR, sSR, sSA
            sCL, sCW, sSS, sTW, sTW, sTW, sCL, sCW, sLA, sLI, sSA
            sES, sES, sSS, sSR, sFW, sTW, sCL, sCW, sCL, sLI, sSA
            sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL"""),
        "output": _rows("""
            sSS, sES, sSS, sSA, sSS, sSS, sSS, sSS, sSS, sLI, sSA
            sTW, sFW, sSS, sTW, sFW, sTW, sCL, sTW, sLA, sLI, sTW
            sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sLA, sES, sES
            sCL, sCL, sSS, sCL, sCL, sTW, sCL, sCL, sCL, sCL, sCL"""),
        "input_only": _rows("""
            sSA, sES, sES, sSR, sSA, sSA, sSA, sSA, sSA, sSA, sSA
            sCL, sFW, sSS, sTW, sFW, sTW, sCL, sCW, sLA, sLI, sTW
            sES, sES, sSS, sES, sFW, sTW, sCL, sCW, sCL, sLI, sES
            sCL, sCL, sCL, sSR, sCL, sCL, sCL, sCL, sLA, sLI, sCL"""),
    },
}


def flag_row(flags: str) -> str | None:
    """The table row a segment's flags select (tcp_state_idx: RST, then SYN, FIN, ACK);
    ``flags`` as scapy writes them ("SA", "FA", "R"). None: no row (the entry closes)."""
    for letter, row in (("R", "rst"), ("S", "syn"), ("F", "fin"), ("A", "ack")):
        if letter in flags:
            return row
    return None


def timeouts(tcp: int = 0, tcpfin: int = 0) -> dict[str, int]:
    """The timeout per state with ``ipvsadm --set tcp tcpfin`` applied (0: unchanged)."""
    table = dict(DEFAULT_TIMEOUTS)
    if tcp:
        table["ESTABLISHED"] = tcp
    if tcpfin:
        table["FIN_WAIT"] = tcpfin
    return table


@dataclass
class TcpEntry:
    """One connection entry's state, moved segment by segment (set_tcp_state).

    >>> entry = TcpEntry(masquerading=True)       # NAT: the director sees both ways
    >>> [entry.segment(f, d) for f, d in (("S", "in"), ("SA", "out"), ("A", "in"))]
    ['SYN_RECV', 'SYN_RECV', 'ESTABLISHED']
    """

    masquerading: bool  # NAT; any other forwarding method marks the entry NOOUTPUT
    secure: bool = False  # secure_tcp's tables
    state: str = "NONE"
    no_output: bool = field(init=False)

    def __post_init__(self) -> None:
        self.no_output = not self.masquerading

    def table(self, direction: Direction) -> Table:
        """The table a segment in ``direction`` is looked up in (an output segment
        clears NOOUTPUT for good)."""
        if direction == "out":
            self.no_output = False
            return "output"
        return "input_only" if self.no_output else "input"

    def segment(self, flags: str, direction: Direction) -> str:
        """The entry's state after it forwards one segment."""
        table = self.table(direction)
        row = flag_row(flags)
        tables = TABLES["secure" if self.secure else "normal"][table]
        self.state = "CLOSE" if row is None else tables[row][self.state]
        return self.state

    @property
    def active(self) -> bool:
        """Counted in the real server's active connections (else inactive)."""
        return self.state in ACTIVE


def walk(masquerading: bool, segments: list[tuple[str, Direction]], *,
         secure: bool = False) -> list[str]:  # fmt: skip
    """The states an entry passes through, one per segment it forwards."""
    entry = TcpEntry(masquerading=masquerading, secure=secure)
    return [entry.segment(flags, direction) for flags, direction in segments]
