"""The /proc/net/ip_vs_conn parser, on text in the kernel's format (ip_vs_conn_seq_show)."""

from testbed.ipvs._conntable import parse_connections, union_of_readings

HEADER = "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"
TABLE = HEADER + (
    "TCP C0000264 D431 CB007164 0050 C633640B 0050 ESTABLISHED     899\n"
    "UDP C0000264 D431 CB007164 0035 C633640C 0035 UDP             299\n"
    # the client's address and port as another entry's real server: not a match
    "TCP CB007164 0050 C0000264 D431 C633640B 0050 FIN_WAIT          2\n"
    "SCTP 2001:0db8:0000:0000:0000:0000:0000:0064 9C40 2001:0db8:0000:0000:0000:0000:0000:0080"
    " 0050 2001:0db8:0000:0000:0000:0000:0000:000b 0050 ESTABLISHED   3599\n"
)


def test_every_entry_is_parsed() -> None:
    conns = parse_connections(TABLE)
    assert [c.protocol for c in conns] == ["TCP", "UDP", "TCP", "SCTP"]
    first = conns[0]
    assert first.client == ("192.0.2.100", 0xD431)
    assert first.virtual == ("203.0.113.100", 80)
    assert first.dest == ("198.51.100.11", 80)
    assert (first.state, first.expires) == ("ESTABLISHED", 899)
    assert conns[3].client == ("2001:db8::64", 40000)


def test_one_clients_entries() -> None:
    conns = parse_connections(TABLE, client=("192.0.2.100", 0xD431))
    assert [(c.protocol, c.dest[0]) for c in conns] == [
        ("TCP", "198.51.100.11"),
        ("UDP", "198.51.100.12"),
    ]


def test_one_ipv6_clients_entries_in_any_spelling() -> None:
    conns = parse_connections(TABLE, client=("2001:db8:0::64", 40000))
    assert [c.dest for c in conns] == [("2001:db8::b", 80)]
    assert parse_connections(TABLE, client=("2001:db8::64", 40001)) == []


def test_one_virtual_services_entries() -> None:
    """The entries of VIP:80; the FIN_WAIT entry has VIP:80 as its client, not a match."""
    conns = parse_connections(TABLE, virtual=("203.0.113.100", 80))
    assert [(c.protocol, c.client[1]) for c in conns] == [("TCP", 0xD431)]
    assert [c.protocol for c in parse_connections(TABLE, virtual=("2001:db8::80", 80))] == ["SCTP"]


def test_a_fwmark_template_is_parsed() -> None:
    """A firewall-mark service's template: protocol IP, the mark as its virtual address."""
    text = (
        "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"
        "IP  CB00710B 0000 00000043 0000 C6336413 0000 ASSURED          13\n"
    )
    [t] = parse_connections(text, client=("203.0.113.11", 0))
    assert (t.protocol, t.virtual, t.dest) == ("IP", ("0.0.0.67", 0), ("198.51.100.19", 0))


def test_the_union_of_readings_holds_an_entry_one_reading_skipped() -> None:
    """Two readings of a table longer than a page, each missing a different live entry
    (one expired during the reading, ip_vs_conn_seq_start): every entry once, in the
    state the later reading saw."""
    rows = TABLE.splitlines(keepends=True)
    first = parse_connections("".join(rows[:2] + rows[3:]))  # skipped the UDP entry
    later = parse_connections("".join(rows[:4]).replace(" 899", " 898"))  # skipped SCTP
    union = union_of_readings([first, later])
    assert [c.protocol for c in union] == ["TCP", "TCP", "SCTP", "UDP"]
    assert union[0].expires == 898
