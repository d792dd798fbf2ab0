"""Every IPVS scheduler the kernel offers, against its reference model.

Each test configures a fresh service on the shared cluster (NAT, every real
server of the topology), opens real TCP connections from the client's
namespace with controlled source addresses and ports, reads where the
director sent each one, and compares with testbed.sched's model of the
kernel file. Models of schedulers that look at counters are fed the kernel's
own counters, read just before each decision. Weights and loads are patterns
laid over however many real servers the topology has. A scheduler the kernel
lacks is skipped, naming the module.
"""

from __future__ import annotations

import math
import shutil
import socket
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from conformance.conftest import skip_unless_topology
from testbed import Cluster
from testbed.kernel import missing_module
from testbed.observe import (
    Comparison,
    Decision,
    Harness,
    SchedulerRecord,
    ThresholdRecord,
    marked_block,
    record,
    spread_over,
)
from testbed.sched import MODELS, Flow, Model, as_built, disruption, slot_shares

# its checks hold on a busy guest (it may run beside another run: conftest.py)
pytestmark = pytest.mark.tolerates_load

FLOWS = 300  # per sequence check
FWMARK = 0x42  # the destination block's mark
CLOSE_TIMEOUT_S = 11  # IPVS TCP CLOSE state lasts 10 s before the entry is unbound


@pytest.fixture(scope="module")
def harness(cluster: Cluster) -> Iterator[Harness]:
    h = Harness(cluster)
    yield h
    h.close()


def need(scheduler: str) -> None:
    if reason := missing_module(f"ip_vs_{scheduler}", needed_by=f"scheduler {scheduler}"):
        pytest.skip(reason)


def check(result: Comparison) -> None:
    """Every kernel choice equals the model's."""
    assert not result.wrong, result.explain()


def model_for(harness: Harness, scheduler: str, flags: tuple[str, ...] = ()) -> Model:
    """The model in the state the kernel's is in after the harness built the service."""
    return as_built(scheduler, harness.dests(), flags)


def hold_on(harness: Harness, loads: dict[str, int]) -> None:
    """Build ActiveConn per server: quiesce all but one (weight 0), hold connections.

    Weight 0 is the kernel's own way to steer new connections away
    (ipvsadm(8): "a weight of 0 ... no new jobs"), so each batch lands on
    exactly one server; the test's weights are restored afterwards.
    """
    weights = {d.name: d.weight for d in harness.dests()}
    held = harness.active_total()
    for name, count in loads.items():
        for other in weights:
            harness.set_weight(other, weights[other] if other == name else 0)
        for _ in range(count):
            got = harness.connect(harness.flow())
            assert got == name, f"building state: connection went to {got}, not {name}"
            held += 1
            harness.wait_active(held)
    for name, w in weights.items():
        harness.set_weight(name, w)


# -- round robin family ---------------------------------------------------------------------


def test_rr_sequence_matches_the_model(harness: Harness) -> None:
    """rr: connections go to the real servers in turn, in the kernel's list order.

    Source: ipvsadm(8) "Round Robin"; net/netfilter/ipvs/ip_vs_rr.c.
    300 sequential connections; every choice must equal the model's.
    """
    harness.configure("rr", weights=(1, 1, 1))
    model = model_for(harness, "rr")
    flows = [harness.flow() for _ in range(FLOWS)]
    check(harness.compare("rr", harness.sequence(model, flows)))


@pytest.mark.parametrize("weights", [(4, 3, 2), (4, 2, 6), (3, 0, 1)], ids=str)
def test_wrr_sequence_matches_the_kernel_interleaving(harness: Harness, weights) -> None:  # type: ignore[no-untyped-def]
    """wrr: the exact weighted interleaving (current weight stepping down by gcd).

    Source: ipvsadm(8) "Weighted Round Robin"; net/netfilter/ipvs/ip_vs_wrr.c
    (mark->cw, mw, di). Weight 0 servers get nothing. 300 connections each.
    """
    need("wrr")
    harness.configure("wrr", weights=weights)
    model = model_for(harness, "wrr")
    flows = [harness.flow() for _ in range(FLOWS)]
    check(harness.compare(f"wrr{list(weights)}", harness.sequence(model, flows),
                          weights=list(weights)))  # fmt: skip


# -- counter-driven ---------------------------------------------------------------------------

# connections held per real server (weights 1, 2, 3), laid over the topology's servers;
# nq's lightest server starts idle beside a busy heavy one, where its idle-server rule
# and sed's formula part: sed takes the third ((1+1)/3 < (0+1)/1), nq the idle first
LOADS = {"lc": (3, 0, 1), "wlc": (3, 0, 1), "sed": (3, 0, 1), "nq": (0, 3, 1)}


@pytest.mark.parametrize("scheduler", LOADS)
def test_least_connection_family_follows_the_counters(harness: Harness, scheduler: str) -> None:
    """lc / wlc / sed / nq: each new connection goes where the kernel's formula says.

    From a built state (held connections 3, 0, 1 on the first, second, third real
    server, nq: 0, 3, 1; the pattern repeated over more; weights 1, 2, 3 likewise),
    60 more held connections; before each, the model is given the director's
    own ActiveConn/InActConn. lc: least (active*256 + inactive); wlc: least
    overhead/weight; sed: least (active+1)/weight; nq: an idle server first,
    else as sed. Ties go to the first in list order.
    Source: ipvsadm(8); net/netfilter/ipvs/ip_vs_{lc,wlc,sed,nq}.c;
    include/net/ip_vs.h ip_vs_dest_conn_overhead().
    """
    need(scheduler)
    harness.configure(scheduler, weights=(1, 2, 3))
    spread = spread_over(LOADS[scheduler], len(harness.server_names))
    loads = dict(zip(harness.server_names, spread, strict=True))
    hold_on(harness, loads)
    decisions = harness.stepwise(MODELS[scheduler], 60)
    check(harness.compare(scheduler, decisions, initial_load=loads))


def test_fo_sends_everything_to_the_heaviest_available(harness: Harness) -> None:
    """fo: always the available server with the highest weight; the next one when it is
    quiesced; of two equally heavy servers, the first in list order (the comparison is
    strict).

    Source: net/netfilter/ipvs/ip_vs_fo.c (weighted failover).
    """
    need("fo")
    harness.configure("fo", weights=(1, 3, 2))
    weights = {d.name: d.weight for d in harness.dests()}
    first = harness.stepwise(MODELS["fo"], 30)
    top = str(Counter(d.got for d in first).most_common(1)[0][0])
    assert {d.got for d in first} == {top} and weights.get(top) == max(weights.values()), (
        f"fo: {Counter(d.got for d in first)}, weights {weights}"
    )
    harness.set_weight(top, 0)  # the heaviest goes quiescent
    second = harness.stepwise(MODELS["fo"], 30)
    rest = {n: w for n, w in weights.items() if n != top}
    nxt = str(Counter(d.got for d in second).most_common(1)[0][0])
    assert {d.got for d in second} == {nxt} and rest.get(nxt) == max(rest.values()), (
        f"fo: after quiescing {top}: {Counter(d.got for d in second)}, weights {weights}"
    )
    lightest = min((n for n in rest if n != nxt), key=rest.__getitem__)
    harness.set_weight(lightest, rest[nxt])  # a tie: the model takes the first in list order
    tied = harness.stepwise(MODELS["fo"], 20)
    check(harness.compare("fo", first + second + tied))


def test_ovf_fills_each_server_to_its_weight(harness: Harness) -> None:
    """ovf: the highest-weight server until its active connections exceed its weight.

    When every server is full the kernel has no server and the client is refused.
    Source: net/netfilter/ipvs/ip_vs_ovf.c.
    """
    need("ovf")
    harness.configure("ovf", weights=(2, 1, 3))
    capacity = sum(d.weight + 1 for d in harness.dests())
    decisions = harness.stepwise(MODELS["ovf"], capacity + 1)
    assert decisions[-1].got is None, "a full ovf service must refuse the next connection"
    check(harness.compare("ovf", decisions))


def test_twos_distribution_within_bounds(harness: Harness) -> None:
    """twos: power of two random choices; the share per server matches the model's odds.

    For each of 200 held connections the model gives the probability of each
    server from the kernel's current counters; observed counts must be within
    4.5 standard deviations of the summed probabilities (independent
    Bernoulli trials; a false failure has probability below 1e-5 per server).
    Source: net/netfilter/ipvs/ip_vs_twos.c.
    """
    need("twos")
    harness.configure("twos", weights=(1, 2, 3))
    expected: Counter[str] = Counter()
    variance: Counter[str] = Counter()
    got: Counter[str] = Counter()
    held = harness.active_total()
    for _ in range(200):
        odds = MODELS["twos"](harness.dests()).distribution()  # type: ignore[attr-defined]
        for name, p in odds.items():
            expected[name] += p
            variance[name] += p * (1 - p)
        choice = harness.connect(harness.flow())
        got[str(choice)] += 1
        held += 1
        harness.wait_active(held)
    bounds = {n: 4.5 * math.sqrt(variance[n]) for n in expected}
    record(SchedulerRecord(
        key="twos", flows=200, observed=dict(got),
        expected={k: round(v, 1) for k, v in expected.items()},
        check="within 4.5 sigma of the model's summed probabilities",
    ))  # fmt: skip
    off = {n: (got[n], round(expected[n], 1)) for n in expected if
           abs(got[n] - expected[n]) > bounds[n]}  # fmt: skip
    assert not off, f"twos: observed vs expected outside 4.5 sigma: {off}"


# -- hashing --------------------------------------------------------------------------------


def with_flags(name: str, flags: tuple[str, ...]) -> str:
    """A comparison's name with the scheduler flags it ran with (sh+sh-port)."""
    return "+".join((name, *flags))


def hashed_flows(harness: Harness, ports_per_source: int) -> list[Flow]:
    return [harness.flow(saddr=s) for s in harness.sources for _ in range(ports_per_source)]


@pytest.mark.parametrize(
    ("scheduler", "weights", "flags"),
    [
        ("sh", (2, 1, 1), ()),
        ("sh", (2, 1, 1), ("sh-port",)),
        ("sh", (1, 0, 1), ()),
        ("sh", (1, 0, 1), ("sh-fallback",)),
        ("mh", (1, 1, 1), ()),
        ("mh", (3, 1, 2), ("mh-port",)),
        ("mh", (1, 0, 1), ("mh-fallback",)),
    ],
    ids=lambda v: "-".join(map(str, v)) if isinstance(v, tuple) else str(v),
)
def test_hashing_scheduler_choice_per_flow(
    harness: Harness, scheduler: str, weights, flags
) -> None:  # type: ignore[no-untyped-def]
    """sh / mh: the choice for every flow equals the model's table lookup.

    256 flows from 64 client addresses (4 source ports each). sh: 256-bucket
    table, weights give consecutive buckets, hash_32 of the source address
    (+ port with sh-port); mh: Maglev table of 4093 slots built with fixed
    keys. A weight-0 server is unavailable: without fallback its flows find
    no server (refused), with fallback they go to the next available one.
    Source: ipvsadm(8) -b; net/netfilter/ipvs/ip_vs_sh.c, ip_vs_mh.c.
    """
    need(scheduler)
    harness.configure(scheduler, weights=weights, flags=flags)
    # a server added with weight 0 has last_weight 0 too: mh gives it no slots
    model = model_for(harness, scheduler, flags)
    decisions = harness.sequence(model, hashed_flows(harness, 4))
    check(harness.compare(with_flags(f"{scheduler}{list(weights)}", flags), decisions))


@pytest.mark.parametrize("flags", [(), ("mh-fallback",)], ids=["refused", "fallback"])
def test_mh_quiesced_server_keeps_its_slots_and_gets_no_flow(
    harness: Harness, flags: tuple[str, ...]
) -> None:
    """mh: a server set to weight 0 at runtime keeps its slots in the lookup table (its
    last_weight is unchanged) but is unavailable: the flows of its slots are refused,
    or with mh-fallback go to the next available server of their probe sequence, and
    the other flows stay where they were. 64 flows, one per client address.
    Source: net/netfilter/ipvs/ip_vs_mh.c (ip_vs_mh_populate from last_weight,
    is_unavailable, ip_vs_mh_get_fallback); ip_vs_ctl.c __ip_vs_update_dest."""
    need("mh")
    harness.configure("mh", weights=(1, 1, 1), flags=flags)
    model = model_for(harness, "mh", flags)
    quiesced = harness.dests()[1].name
    flows = hashed_flows(harness, 1)
    owned = [f for f in flows if (d := model.schedule(f)) is not None and d.name == quiesced]
    assert owned, f"no flow hashes to {quiesced}: the state this test needs is missing"
    harness.set_weight(quiesced, 0)
    model.update(harness.dests())  # the kernel's table rebuilt: last_weight kept
    check(harness.compare(with_flags("mh-quiesced", flags), harness.sequence(model, flows),
                          quiesced=quiesced, flows_of_its_slots=len(owned)))  # fmt: skip


def test_mh_imbalance_and_disruption(harness: Harness) -> None:
    """Maglev: slots spread evenly, and removing 1 of N servers moves about 1/N of flows.

    The kernel's per-flow choices are first checked against the model's table
    (before and after removing the last real server, 256 flows each), which makes the table's
    figures the kernel's: imbalance = max share / mean share - 1, compared
    with the Maglev paper's "about 1%" (bound used: 3%); disruption = share of
    table slots whose server changes, compared with 1/N (bound: 1/N to 1.5/N).
    Source: Eisenbud et al., "Maglev", NSDI 2016, 3.4 and 5.3;
    net/netfilter/ipvs/ip_vs_mh.c.
    """
    need("mh")
    harness.configure("mh", weights=(1, 1, 1), flags=("mh-port",))
    before_model = model_for(harness, "mh", ("mh-port",))
    before = harness.sequence(before_model, hashed_flows(harness, 4))
    table_before = before_model.table()  # type: ignore[attr-defined]
    last = harness.real_server(harness.server_names[-1])
    harness.cluster.ipvs.remove_real_server(harness.cluster.spec.service, last)
    after_model = model_for(harness, "mh", ("mh-port",))
    after = harness.sequence(after_model, hashed_flows(harness, 4))
    table_after = after_model.table()  # type: ignore[attr-defined]
    shares = slot_shares(table_before)
    imbalance = max(shares.values()) / (1 / len(shares)) - 1
    moved = disruption(table_before, table_after)
    n = len(harness.server_names)
    check(harness.compare("mh-disruption", before + after, imbalance_pct=round(100 * imbalance, 2),
                          disruption=round(moved, 4), one_over_n=round(1 / n, 4)))  # fmt: skip
    assert imbalance <= 0.03, f"Maglev imbalance {imbalance:.2%} > 3%"
    assert 1 / n - 1e-9 <= moved <= 1.5 / n, f"disruption {moved:.3f} not within [1/N, 1.5/N]"


def test_dh_sends_a_destination_to_its_bucket(harness: Harness) -> None:
    """dh: the server is picked by hashing the destination address (here the one VIP).

    Every flow to the VIP lands on the server of the VIP's bucket.
    Source: net/netfilter/ipvs/ip_vs_dh.c (256 buckets, hash_32 of daddr).
    """
    need("dh")
    harness.configure("dh", weights=(1, 1, 1))
    model = model_for(harness, "dh")
    check(harness.compare("dh", harness.sequence(model, [harness.flow() for _ in range(60)])))


def test_dh_sends_nothing_when_the_buckets_server_is_quiesced(harness: Harness) -> None:
    """dh: with the server of the VIP's bucket at weight 0, the VIP's flows are refused,
    not sent to another server (dh does not fall back) nor to the quiesced one.
    Source: net/netfilter/ipvs/ip_vs_dh.c (is_overloaded: weight <= 0)."""
    need("dh")
    harness.configure("dh", weights=(1, 1, 1))
    bucket = model_for(harness, "dh").schedule(harness.flow())
    assert bucket is not None
    harness.set_weight(bucket.name, 0)
    model = model_for(harness, "dh")
    decisions = harness.sequence(model, [harness.flow() for _ in range(6)])
    check(harness.compare("dh-quiesced", decisions, quiesced=bucket.name))
    assert all(d.expected is None for d in decisions), "the model should refuse every flow"


@pytest.fixture
def destinations(cluster: Cluster, harness: Harness) -> Iterator[list[str]]:
    """A block of destination addresses marked FWMARK on the director (nftables)."""
    if shutil.which("nft") is None:
        pytest.skip("nft(8) is missing: firewall marks need nftables")
    with marked_block(cluster, cluster.base_spec.service.family, mark=FWMARK) as addresses:
        yield addresses


def test_dh_hashes_every_destination_of_a_fwmark_service(
    harness: Harness, destinations: list[str]
) -> None:
    """dh through one firewall-mark service: flows to 62 destination addresses, each
    twice, each on the server of its address's bucket, as the model hashes it.
    Source: net/netfilter/ipvs/ip_vs_dh.c; ipvsadm(8) -f."""
    need("dh")
    harness.configure("dh", weights=(1, 1, 1), fwmark=FWMARK)
    model = model_for(harness, "dh")
    flows = [harness.flow(daddr=d) for d in destinations * 2]
    result = harness.compare("dh-fwmark", harness.sequence(model, flows))
    check(result)
    assert len({d.got for d in result.decisions}) == len(harness.server_names), "one bucket only"


@pytest.mark.parametrize("scheduler", ["lblc", "lblcr"])
def test_locality_schedulers_keep_each_destination_of_a_fwmark_service(
    harness: Harness, destinations: list[str], scheduler: str
) -> None:
    """lblc / lblcr through one firewall-mark service: 40 held connections cycling over
    8 destination addresses; each address keeps its server (lblcr: its set) until
    that server is overloaded, new addresses go to the weighted least-connection
    server; the model keeps its cache and reads the kernel's counters before each.
    Source: net/netfilter/ipvs/ip_vs_lblc.c, ip_vs_lblcr.c; ipvsadm(8) -f."""
    need(scheduler)
    harness.configure(scheduler, weights=(2, 4, 1), fwmark=FWMARK)
    model = model_for(harness, scheduler)
    flows = [harness.flow(daddr=destinations[i % 8]) for i in range(40)]
    check(harness.compare(f"{scheduler}-fwmark", follow(harness, model, flows)))


def follow(harness: Harness, model: Model, flows: list[Flow]) -> list[Decision]:
    """Each flow held open in turn, the model updated with the kernel's counters first."""
    decisions = []
    held = harness.active_total()
    for f in flows:
        model.update(harness.dests())  # the kernel's counters; the model keeps its cache
        want = model.schedule(f)
        decisions.append(Decision(flow=f, expected=want.name if want else None,
                                  got=harness.connect(f)))  # fmt: skip
        held += 1
        harness.wait_active(held)
    return decisions


@pytest.mark.parametrize("scheduler", ["lblc", "lblcr"])
def test_locality_schedulers_are_sticky_per_destination(harness: Harness, scheduler: str) -> None:
    """lblc / lblcr: a destination address sticks to its server until that one is overloaded.

    The first connection picks by weighted least connection; later ones stay
    while the server is not overloaded (active > weight while another server
    has active*2 < weight); the model follows the kernel's counters.
    Source: net/netfilter/ipvs/ip_vs_lblc.c, ip_vs_lblcr.c.
    """
    need(scheduler)
    harness.configure(scheduler, weights=(2, 4, 1))
    model = model_for(harness, scheduler)
    check(harness.compare(scheduler, follow(harness, model, [harness.flow() for _ in range(20)])))


@pytest.mark.parametrize("scheduler", ["lblc", "lblcr"])
def test_locality_schedulers_never_start_from_a_quiesced_server(
    harness: Harness, scheduler: str
) -> None:
    """lblc / lblcr: with the first server in list order at weight 0 and idle, a new
    destination goes to the weighted least-connection server among the others (the
    search starts from the first server of weight > 0, which an idle weight-0 one
    would otherwise beat on every comparison); 10 held connections.
    Source: net/netfilter/ipvs/ip_vs_lblc.c, ip_vs_lblcr.c (__ip_vs_lblc_schedule)."""
    need(scheduler)
    harness.configure(scheduler, weights=(2, 4, 1))
    harness.set_weight(harness.dests()[0].name, 0)
    model = model_for(harness, scheduler)
    flows = [harness.flow() for _ in range(10)]
    check(harness.compare(f"{scheduler}-first-quiesced", follow(harness, model, flows)))


# -- weights and thresholds at runtime ------------------------------------------------------------


def test_weight_zero_is_quiescent(harness: Harness) -> None:
    """Weight 0: no new connections, but established ones keep flowing.

    Source: ipvsadm(8) -w "a weight of 0 ... will not accept new jobs ...
    existing connections" (quiescent server).
    """
    harness.configure("rr", weights=(1,))
    quiet = harness.server_names[0]
    held = {}
    for _ in harness.server_names:  # rr: one connection reaches each server
        name = harness.connect(harness.flow())
        assert name, f"connection failed: {harness.errors[-1:]}"
        held[name] = harness.connector.held[-1]
    harness.set_weight(quiet, 0)
    newer = [harness.connect(harness.flow()) for _ in range(30)]
    assert quiet not in newer, f"a quiesced server got new connections: {Counter(newer)}"
    sock = held[quiet]
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    reply = sock.recv(4096)
    assert reply.rstrip().endswith(quiet.encode()), (
        f"established connection to {quiet} stopped working: {reply!r}"
    )


def test_upper_threshold_and_three_quarter_hysteresis(harness: Harness) -> None:
    """-x 4 on the first real server: overloaded at 4 connections, usable again only below
    3/4 of 4.

    Source: ipvsadm(8) -x/-y ("... when the lower threshold is 0 it is 3/4
    of the upper"); net/netfilter/ipvs/ip_vs_conn.c ip_vs_bind_dest /
    ip_vs_unbind_dest. An RST-closed connection is unbound when its CLOSE
    state expires (10 s).
    """
    names = harness.server_names
    limited = names[0]
    harness.configure("rr", weights=(1,), upper=(4,) + (0,) * (len(names) - 1))
    socks: dict[str, list[socket.socket]] = {n: [] for n in names}

    def open_some(n: int) -> Counter[str]:
        got: Counter[str] = Counter()
        for _ in range(n):
            name = harness.connect(harness.flow())
            socks[str(name)].append(harness.connector.held[-1])
            got[str(name)] += 1
        return got

    first = open_some(4 * len(names))  # rr: 4 each, the limited one overloaded at its 4th
    assert first[limited] == 4, f"{limited} should take exactly 4 before overload: {first}"
    assert open_some(6)[limited] == 0, f"{limited} overloaded at 4 must be skipped"
    stages = []
    for expect_usable in (False, True):  # 3 left: 3 >= 3/4*4 keeps it; 2 left: usable
        socks[limited].pop().close()
        time.sleep(CLOSE_TIMEOUT_S)
        got = open_some(6)
        stages.append(dict(got))
        assert (got[limited] > 0) == expect_usable, (
            f"after closing to {len(socks[limited])} on {limited}: it "
            f"{'should' if expect_usable else 'must not'} get connections; got {dict(got)}"
        )
    record(ThresholdRecord(key="upper-4-hysteresis", first=dict(first), stages=stages))


def test_removing_and_adding_a_real_server_at_runtime(harness: Harness) -> None:
    """A removed real server gets no new connections; a re-added one is used again (rr).

    Re-adding puts it at the head of the kernel list (list_add_rcu).
    Source: ipvsadm(8) -d/-a; net/netfilter/ipvs/ip_vs_ctl.c, ip_vs_rr.c.
    """
    skip_unless_topology(harness.cluster, real_servers=2)
    harness.configure("rr", weights=(1,))
    moved = harness.server_names[1]
    svc, rs = harness.cluster.spec.service, harness.real_server(moved)
    model = model_for(harness, "rr")  # one model, told of each change as the kernel is
    start = harness.sequence(model, [harness.flow() for _ in range(10)])
    harness.cluster.ipvs.remove_real_server(svc, rs)
    model.update(harness.dests())
    without = harness.sequence(model, [harness.flow() for _ in range(30)])
    assert moved not in {d.got for d in without}, "a removed server got new connections"
    harness.cluster.ipvs.add_real_server(svc, rs)
    assert harness.dests()[0].name == moved, "a re-added server must head the kernel list"
    model.update(harness.dests())
    back = harness.sequence(model, [harness.flow() for _ in range(30)])
    assert moved in {d.got for d in back}, "a re-added server got no connections"
    check(harness.compare("rr-runtime", start + without + back))
