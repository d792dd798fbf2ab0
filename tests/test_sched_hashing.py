"""Reference models of the hashing and locality schedulers: dh, sh, mh, lblc, lblcr."""

from __future__ import annotations

import pytest

from testbed.sched import Dest, Flow
from testbed.sched._hashing import (
    DH_TAB_SIZE,
    HASH_MODELS,
    MH_HASH1,
    MH_HASH2,
    MH_TAB_SIZE,
    SH_TAB_SIZE,
    DhModel,
    LblcModel,
    LblcrModel,
    MhModel,
    ShModel,
    addr_fold,
    disruption,
    hash_32,
    hsiphash,
    mh_hashkey,
    siphash,
    slot_shares,
)

# Key 00 01 .. 0f, message i bytes 00 01 .. i-1: the SipHash reference vectors
# (github.com/veorq/SipHash), as the kernel's lib/test_siphash.c lists them.
TEST_KEY = (0x0706050403020100, 0x0F0E0D0C0B0A0908)
SIPHASH24_VECTORS = [
    0x726FDB47DD0E0E31, 0x74F839C593DC67FD, 0x0D6C8009D9A94F5A, 0x85676696D7FB7E2D,
    0xCF2794E0277187B7, 0x18765564CD99A68D, 0xCBC9466E58FEE3CE, 0xAB0200F58B01D137,
    0x93F5F5799A932462, 0x9E0082DF0BA9E4B0, 0x7A5DBBC594DDB9F3, 0xF4B32F46226BADA7,
    0x751E8FBC860EE5FB, 0x14EA5627C0843D90, 0xF723CA908E7AF2EE, 0xA129CA6149BE45E5,
    0x3F2ACC7F57C29BDB, 0x699AE9F52CBE4794, 0x4BC1B3F0968DD39C, 0xBB6DC91DA77961BD,
    0xBED65CF21AA2EE98, 0xD0F2CBB02E3B67C7, 0x93536795E3A33E88, 0xA80C038CCD5CCEC8,
    0xB8AD50C6F649AF94, 0xBCE192DE8A85B8EA, 0x17D835B85BBB15F3, 0x2F2E6163076BCFAD,
    0xDE4DAAACA71DC9A5, 0xA6A2506687956571, 0xAD87A3535C49EF28, 0x32D892FAD841C342,
    0x7127512F72F27CCE, 0xA7F32346F95978E3, 0x12E0B01ABB051238, 0x15E034D40FA197AE,
    0x314DFFBE0815A3B4, 0x027990F029623981, 0xCADCD4E59EF40C4D, 0x9ABFD8766A33735C,
    0x0E3EA96B5304A7D0, 0xAD0C42D6FC585992, 0x187306C89BC215A9, 0xD4A60ABCF3792B95,
    0xF935451DE4F21DF2, 0xA9538F0419755787, 0xDB9ACDDFF56CA510, 0xD06C98CD5C0975EB,
    0xE612A3CB9ECBA951, 0xC766E62CFCADAF96, 0xEE64435A9752FE72, 0xA192D576B245165A,
    0x0A8787BF8ECB74B2, 0x81B3E73D20B49B6F, 0x7FA8220BA3B2ECEA, 0x245731C13CA42499,
    0xB78DBFAF3A8D83BD, 0xEA1AD565322A1A0B, 0x60E61C23A3795013, 0x6606D7E446282B93,
    0x6CA4ECB15C5F91E1, 0x9F626DA15C9625F3, 0xE51B38608EF25F57, 0x958A324CEB064572,
]  # fmt: skip
# hsiphash() of a 64-bit kernel (SipHash-1-3 truncated to u32), lib/test_siphash.c
HSIPHASH64_VECTORS = [
    0x050FC4DC, 0x7D57CA93, 0x4DC7D44D, 0xE7DDF7FB, 0x88D38328, 0x49533B67, 0xC59F22A7,
    0x9BB11140, 0x8D299A8E, 0x6C063DE4, 0x92FF097F, 0xF94DC352, 0x57B4D9A2, 0x1229FFA7,
    0xC0F95D34, 0x2A519956, 0x7D908B66, 0x63DBD80C, 0xB473E63E, 0x8D297D1C, 0xA6CCE040,
    0x2B45F844, 0xA320872E, 0xDAE6C123, 0x67349C8C, 0x705B0979, 0xCA9913A5, 0x4ADE3B35,
    0xEF6CD00D, 0x4AB1E1F4, 0x43C5E663, 0x8C21D1BC, 0x16A7B60D, 0x7A8FF9BF, 0x1F2A753E,
    0xBF186B91, 0xADA26206, 0xA3C33057, 0xAE3A36A1, 0x7B108392, 0x99E41531, 0x3F1AD944,
    0xC8138825, 0xC28949A6, 0xFAF8876B, 0x9F042196, 0x68B1D623, 0x8B5114FD, 0xDF074C46,
    0x12CC86B3, 0x0A52098F, 0x9D292F9A, 0xA2F41F12, 0x43A71ED0, 0x73F0BCE6, 0x70A7E980,
    0x243C6D75, 0xFDB71513, 0xA67D8A08, 0xB7E8F148, 0xF7A644EE, 0x0F1837F2, 0x4B6694E0,
    0xB7BBB3A8,
]  # fmt: skip


def servers(*weights: int, port: int = 80, **fields: int) -> list[Dest]:
    return [
        Dest(name=f"rs{i + 1}", addr=f"10.0.0.{i + 1}", port=port, weight=w, **fields)
        for i, w in enumerate(weights)
    ]


def flow(saddr: str = "192.0.2.10", sport: int = 40000, daddr: str = "203.0.113.100") -> Flow:
    return Flow(saddr=saddr, sport=sport, daddr=daddr, dport=80)


def replace(dests: list[Dest], name: str, **changes: int | bool) -> list[Dest]:
    out = []
    for d in dests:
        fields = {k: getattr(d, k) for k in Dest.__dataclass_fields__}
        if d.name == name:
            fields.update(changes)
        out.append(Dest(**fields))
    return out


# --- hashes --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(64))
def test_siphash24_reference_vectors(n: int) -> None:
    assert siphash(bytes(range(n)), TEST_KEY) == SIPHASH24_VECTORS[n]


@pytest.mark.parametrize("n", range(64))
def test_hsiphash_is_siphash13_truncated_on_64bit(n: int) -> None:
    data = bytes(range(n))
    assert hsiphash(data, TEST_KEY) == HSIPHASH64_VECTORS[n]
    assert siphash(data, TEST_KEY, c_rounds=1, d_rounds=3) & 0xFFFFFFFF == HSIPHASH64_VECTORS[n]
    # only the round counts separate the two
    assert siphash(data, TEST_KEY) & 0xFFFFFFFF != HSIPHASH64_VECTORS[n]


def test_hash_32_known_values() -> None:
    assert hash_32(0, 8) == 0
    assert hash_32(1, 32) == 0x61C88647
    assert hash_32(1, 8) == 0x61
    assert hash_32(2, 8) == 0xC3  # 0xC3910C8E
    assert hash_32(0xFFFFFFFF, 32) == 0x9E3779B9  # -GOLDEN_RATIO_32 mod 2**32
    assert hash_32(0xCB007164, 8) == 0x02  # 203.0.113.100: product 0x0299CABC
    with pytest.raises(ValueError):
        hash_32(1, 0)


def test_addresses_enter_in_host_order() -> None:
    assert addr_fold("10.0.0.1") == 0x0A000001
    assert addr_fold("::1") == 1
    assert addr_fold("2001:db8::1") == 0x20010DB8 ^ 1


def test_models_declare_kernel_names() -> None:
    assert [m.name for m in HASH_MODELS] == ["dh", "sh", "mh", "lblc", "lblcr"]
    for m in HASH_MODELS:
        assert m.source == f"net/netfilter/ipvs/ip_vs_{m.name}.c"
        assert m.deterministic
        assert m.__doc__ and m.source in m.__doc__
    assert ShModel.flags_supported == frozenset({"sh-fallback", "sh-port"})
    assert MhModel.flags_supported == frozenset({"mh-fallback", "mh-port"})
    with pytest.raises(ValueError):
        DhModel(servers(1), flags=frozenset({"sh-port"}))


# --- dh ------------------------------------------------------------------------------------


def test_dh_table_is_round_robin_whatever_the_weights() -> None:
    names = ["rs1", "rs2", "rs3"]
    for weights in [(1, 1, 1), (5, 1, 0)]:
        table = DhModel(servers(*weights)).table()
        assert len(table) == DH_TAB_SIZE == 256
        assert table == [names[i % 3] for i in range(256)]
    assert DhModel([]).table() == [None] * 256


def test_dh_hashes_the_destination_address() -> None:
    dests = servers(1, 1, 1)
    model = DhModel(dests)
    assert DhModel.bucket("203.0.113.100") == 2
    chosen = model.schedule(flow(daddr="203.0.113.100"))
    assert chosen is dests[2 % 3]
    # the source does not matter
    assert model.schedule(flow(saddr="198.51.100.7", sport=1, daddr="203.0.113.100")) is chosen


def test_dh_unavailable_bucket_gives_no_server() -> None:
    dests = servers(1, 1, 1)
    target = dests[DhModel.bucket("203.0.113.100") % 3].name
    for change in ({"weight": 0}, {"overloaded": True}):
        model = DhModel(replace(dests, target, **change))
        assert model.schedule(flow(daddr="203.0.113.100")) is None
    assert DhModel([]).schedule(flow()) is None


# --- sh ------------------------------------------------------------------------------------


def test_sh_table_gives_weight_consecutive_buckets() -> None:
    table = ShModel(servers(2, 1, 1)).table()
    assert len(table) == SH_TAB_SIZE == 256
    assert table[:8] == ["rs1", "rs1", "rs2", "rs3", "rs1", "rs1", "rs2", "rs3"]
    assert slot_shares(table) == {"rs1": 0.5, "rs2": 0.25, "rs3": 0.25}


def test_sh_table_wraps_mid_cycle_and_weight_zero_keeps_one_bucket() -> None:
    table = ShModel(servers(3, 2)).table()
    assert table[:5] == ["rs1", "rs1", "rs1", "rs2", "rs2"]
    assert table.count("rs1") == 3 * 51 + 1 and table[255] == "rs1"
    table = ShModel(servers(1, 0, 1)).table()
    assert table[:6] == ["rs1", "rs2", "rs3", "rs1", "rs2", "rs3"]


def test_sh_hash_of_source_address_and_port() -> None:
    assert ShModel.hashkey("10.0.0.1", 0) == hash_32(0x0A000001, 8) == 39
    # port and address are summed as host-order numbers
    assert ShModel.hashkey("10.0.0.1", 1) == ShModel.hashkey("10.0.0.2", 0)
    assert ShModel.hashkey("10.0.0.1", 0, offset=3) == 42
    dests = servers(1, 1, 1)
    plain = ShModel(dests)
    ported = ShModel(dests, flags=frozenset({"sh-port"}))
    f = flow(saddr="192.0.2.10", sport=5)
    assert plain.schedule(f) is dests[ShModel.hashkey("192.0.2.10", 0) % 3]
    assert ported.schedule(f) is dests[ShModel.hashkey("192.0.2.10", 5) % 3]
    assert ported.schedule(f) is ported.schedule(flow(saddr="192.0.2.15", sport=0))
    # without sh-port the port is ignored; with it, only TCP/UDP/SCTP ports count
    assert {plain.schedule(flow(sport=p)).name for p in range(50)} == {plain.schedule(f).name}
    assert len({ported.schedule(flow(sport=p)).name for p in range(50)}) == 3
    icmp = Flow(saddr="192.0.2.10", sport=5, daddr="203.0.113.100", dport=0, protocol=1)
    assert ported.schedule(icmp) is plain.schedule(icmp)


def sh_flow_on(model: ShModel, name: str) -> Flow:
    table = model.table()
    for i in range(1, 255):
        f = flow(saddr=f"192.0.2.{i}")
        if table[ShModel.hashkey(f.saddr, 0)] == name:
            return f
    raise AssertionError(f"no test flow hashes to {name}")


def test_sh_fallback_probes_from_twice_the_hash() -> None:
    dests = servers(1, 0, 1)
    model = ShModel(dests)
    fallback = ShModel(dests, flags=frozenset({"sh-fallback"}))
    table = model.table()
    f = sh_flow_on(model, "rs2")
    assert model.schedule(f) is None
    ihash = ShModel.hashkey(f.saddr, 0)
    probes = [table[(k + 2 * ihash) & 255] for k in range(256)]
    expected = next(name for name in probes if name != "rs2")
    assert fallback.schedule(f).name == expected
    # a flow whose bucket is available is not moved
    g = sh_flow_on(model, "rs1")
    assert fallback.schedule(g) is model.schedule(g) is dests[0]


def test_sh_overloaded_and_all_unavailable() -> None:
    dests = servers(1, 1)
    model = ShModel(dests, flags=frozenset({"sh-fallback"}))
    f = sh_flow_on(model, "rs1")
    model.update(replace(dests, "rs1", overloaded=True))
    assert model.schedule(f).name == "rs2"
    model.update(replace(replace(dests, "rs1", overloaded=True), "rs2", weight=0))
    assert model.schedule(f) is None
    assert ShModel([]).schedule(f) is None


def test_sh_update_rebuilds_with_new_weights() -> None:
    dests = servers(1, 1)
    model = ShModel(dests)
    model.update(replace(dests, "rs2", weight=3))
    assert model.table()[:8] == ["rs1", "rs2", "rs2", "rs2"] * 2


# --- mh ------------------------------------------------------------------------------------


def test_mh_constants() -> None:
    assert MH_TAB_SIZE == 4093
    assert MH_HASH1 == (0x9E3779B1, 0x9E3779B1)
    assert MH_HASH2 == (0x9E37A52C, 0x9E37A52C)
    # the kernel hashes the u32 offset + port + addr as 4 little-endian bytes
    v = (0x0A000001 + 80).to_bytes(4, "little")
    assert mh_hashkey("10.0.0.1", 80, MH_HASH1) == hsiphash(v, MH_HASH1) == 0x439C0CBE
    assert mh_hashkey("10.0.0.1", 80, MH_HASH2) == 0x97B3DC47
    assert mh_hashkey("10.0.0.1", 80, MH_HASH1, 7) == mh_hashkey("10.0.0.1", 87, MH_HASH1)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_mh_fills_every_slot_evenly(n: int) -> None:
    table = MhModel(servers(*[1] * n)).table()
    assert len(table) == MH_TAB_SIZE
    assert None not in table
    shares = slot_shares(table)
    assert len(shares) == n
    for share in shares.values():
        assert abs(share * n - 1) < 0.01


@pytest.mark.parametrize("weights", [(1, 2, 3), (100, 200, 300, 1000), (3, 0, 5), (2, 2, 4)])
def test_mh_share_follows_weights(weights: tuple[int, ...]) -> None:
    shares = slot_shares(MhModel(servers(*weights)).table())
    total = sum(weights)
    for i, w in enumerate(weights):
        share = shares.get(f"rs{i + 1}", 0.0)
        if w == 0:
            assert share == 0.0
        else:
            assert abs(share / (w / total) - 1) < 0.02  # proportional within 2 %


def test_mh_weight_scaling() -> None:
    assert MhModel(servers(100, 200, 300, 1000)).gcd_rshift() == (100, 0)
    assert MhModel(servers(0, 0)).gcd_rshift() == (0, 0)
    # fls(1000) = 10 bits, 6 kept: turns 1000 >> 4 = 62, and 1 >> 4 = 0 raised to 1
    model = MhModel(servers(1, 1000))
    assert model.gcd_rshift() == (1, 4)
    share = slot_shares(model.table())["rs1"]
    assert abs(share * 63 - 1) < 0.02  # 1/63 of the slots, not 1/1001


@pytest.mark.parametrize("n", [4, 5, 6, 8])
def test_mh_disruption_when_one_dest_is_removed(n: int) -> None:
    dests = servers(*[1] * n)
    before = MhModel(dests).table()
    for gone in range(n):
        after = MhModel(dests[:gone] + dests[gone + 1 :]).table()
        moved = disruption(before, after)
        assert 1 / n - 1e-9 <= moved <= 1.2 / n
        # the removed server's slots are spread over the others, not handed to one
        heirs = {a for a, b in zip(after, before, strict=True) if b == f"rs{gone + 1}"}
        assert len(heirs) == n - 1


def test_mh_weight_zero_quiesces_without_moving_slots() -> None:
    dests = servers(1, 1, 1)
    model = MhModel(dests)
    fallback = MhModel(dests, flags=frozenset({"mh-fallback"}))
    before = model.table()
    quiesced = replace(dests, "rs2", weight=0)
    model.update(quiesced)
    fallback.update(quiesced)
    assert model.table() == before  # last_weight keeps rs2's slots
    assert model.last_weight[("10.0.0.2", 80)] == 1
    on_rs2 = [f for f in (flow(saddr=f"192.0.2.{i}") for i in range(1, 200)) if
              before[model.slot(f)] == "rs2"]  # fmt: skip
    assert on_rs2
    for f in on_rs2:
        assert model.schedule(f) is None
        assert fallback.schedule(f).name in {"rs1", "rs3"}
    # a fresh model of the same dump without last_weights drops rs2 from the table
    assert "rs2" not in MhModel(quiesced).table()
    assert MhModel(quiesced, last_weights={"rs2": 1}).table() == before
    # removing rs2 for real rebuilds without it
    model.update([d for d in quiesced if d.name != "rs2"])
    assert "rs2" not in model.table()


def test_mh_lookup_and_port_flag() -> None:
    dests = servers(1, 1, 1)
    model = MhModel(dests)
    ported = MhModel(dests, flags=frozenset({"mh-port"}))
    f = flow(saddr="192.0.2.10", sport=1234)
    slot = mh_hashkey("192.0.2.10", 0, MH_HASH1) % MH_TAB_SIZE
    assert model.slot(f) == slot
    assert model.schedule(f).name == model.table()[slot]
    assert {model.schedule(flow(sport=p)).name for p in range(100)} == {model.schedule(f).name}
    assert len({ported.schedule(flow(sport=p)).name for p in range(100)}) == 3
    assert ported.slot(f) == mh_hashkey("192.0.2.10", 1234, MH_HASH1) % MH_TAB_SIZE


def test_mh_no_weight_no_server() -> None:
    model = MhModel(servers(0, 0))
    assert model.table() == [None] * MH_TAB_SIZE
    assert model.schedule(flow()) is None
    assert MhModel([]).schedule(flow()) is None


def test_mh_overloaded_dest_is_skipped_by_fallback_only() -> None:
    dests = servers(1, 1)
    f = next(f for f in (flow(saddr=f"192.0.2.{i}") for i in range(1, 200))
             if MhModel(dests).schedule(f).name == "rs1")  # fmt: skip
    loaded = replace(dests, "rs1", overloaded=True)
    assert MhModel(loaded).schedule(f) is None
    assert MhModel(loaded, flags=frozenset({"mh-fallback"})).schedule(f).name == "rs2"


# --- lblc ----------------------------------------------------------------------------------


def test_lblc_first_assignment_then_stickiness() -> None:
    dests = replace(replace(servers(1, 1, 1), "rs1", active=3), "rs2", active=1)
    model = LblcModel(dests)
    f = flow(daddr="198.51.100.1")
    assert model.schedule(f).name == "rs3"  # least loaded
    # loads change: rs3 is now the busiest but not "overloaded" (active <= weight)
    model.update(replace(replace(servers(1, 1, 1), "rs3", active=1), "rs1", active=0))
    assert model.schedule(f).name == "rs3"
    # another destination address gets its own least-loaded choice
    assert model.schedule(flow(daddr="198.51.100.2")).name == "rs1"
    # the same destination from another client sticks too
    assert model.schedule(flow(saddr="192.0.2.99", daddr="198.51.100.1")).name == "rs3"


def test_lblc_overloaded_needs_a_half_loaded_server() -> None:
    f = flow(daddr="198.51.100.1")
    model = LblcModel(servers(4, 4))
    assert model.schedule(f).name == "rs1"
    # rs1 above its weight but nobody below half of theirs: stick
    model.update(replace(replace(servers(4, 4), "rs1", active=5), "rs2", active=2))
    assert model.schedule(f).name == "rs1"
    # rs2 below half its weight (1 * 2 < 4): rs1 counts as overloaded, move to the least loaded
    model.update(replace(replace(servers(4, 4), "rs1", active=5), "rs2", active=1))
    assert model.schedule(f).name == "rs2"
    assert model.cache["198.51.100.1"] == ("10.0.0.2", 80)


def test_lblc_ignores_overload_flag_on_cached_server_but_not_weight_or_removal() -> None:
    f = flow(daddr="198.51.100.1")
    dests = servers(1, 1)
    model = LblcModel(dests)
    assert model.schedule(f).name == "rs1"
    model.update(replace(dests, "rs1", overloaded=True))
    assert model.schedule(f).name == "rs1"
    model.update(replace(dests, "rs1", weight=0))
    assert model.schedule(f).name == "rs2"
    model.update([dests[0]])  # rs2 removed
    assert model.schedule(f).name == "rs1"
    model.update([])
    assert model.schedule(f) is None


def test_lblc_counts_entries_like_the_kernel() -> None:
    f = flow(daddr="198.51.100.1")
    dests = servers(1, 1)
    model = LblcModel(dests)
    model.schedule(f)
    model.update(replace(dests, "rs1", weight=0))
    model.schedule(f)
    assert len(model.cache) == 1 and model.entries == 2  # replacement is not uncounted


# --- lblcr ---------------------------------------------------------------------------------


def test_lblcr_set_grows_under_load_and_shrinks_on_expiry() -> None:
    f = flow(daddr="198.51.100.1")
    model = LblcrModel(servers(2, 2, 2))
    assert model.schedule(f).name == "rs1"
    assert model.set_of(f.daddr) == ["rs1"]
    # rs1 overloaded (3 > 2) while rs3 is idle: rs3 (least loaded) joins the set, newest first
    loads = {"rs1": 3, "rs2": 1, "rs3": 0}
    model.update([replace([d], d.name, active=loads[d.name])[0] for d in servers(2, 2, 2)])
    assert model.schedule(f).name == "rs3"
    assert model.set_of(f.daddr) == ["rs3", "rs1"]
    # the set's least loaded member is used while it is not overloaded
    loads = {"rs1": 0, "rs2": 0, "rs3": 2}
    model.update([replace([d], d.name, active=loads[d.name])[0] for d in servers(2, 2, 2)])
    assert model.schedule(f).name == "rs1"
    assert model.set_of(f.daddr) == ["rs3", "rs1"]
    # after lblcr_expiration the most loaded member leaves, after this packet's choice
    model.mark_expired(f.daddr)
    assert model.schedule(f).name == "rs1"
    assert model.set_of(f.daddr) == ["rs1"]


def test_lblcr_removed_member_is_skipped() -> None:
    f = flow(daddr="198.51.100.1")
    dests = servers(1, 1)
    model = LblcrModel(dests)
    assert model.schedule(f).name == "rs1"
    model.update([dests[1]])
    assert model.schedule(f).name == "rs2"
    assert model.set_of(f.daddr) == ["rs2", "rs1"]
    model.update(dests)  # rs1 back from the trash: both members usable again
    assert model.schedule(f).name == "rs2"  # first in set order wins the tie
    model.update([])
    assert model.schedule(f) is None


def test_disruption_helper() -> None:
    assert disruption(["a", "b"], ["a", "c"]) == 0.5
    with pytest.raises(ValueError):
        disruption(["a"], [])
