"""Schedulers beyond TCP over IPv4: rr, wrr, sh and mh for UDP and SCTP, and over IPv6.

A scheduler sees a packet's addresses and ports, never its protocol
(ip_vs_core.c ip_vs_schedule hands it the parsed header), so the same
reference models must hold for a UDP datagram's first packet, an SCTP INIT
and a TCP SYN. sh and mh hash the source address, and an IPv6 one is folded
into 32 bits first (ip_vs_sh.c / ip_vs_mh.c ip_vs_*_hashkey, addr_fold): the
models fold it the same way, and the flows come from 64 IPv6 addresses.
Cases cover every pair of (scheduler, protocol, family), leaving out TCP over
IPv4, which test_schedulers covers in depth.
Sources: ipvsadm(8) -s; net/netfilter/ipvs/ip_vs_rr.c, ip_vs_wrr.c,
ip_vs_sh.c, ip_vs_mh.c.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.conftest import skip_unless_available, skip_unless_family
from conformance.test_schedulers import check, hashed_flows, model_for, need
from testbed import Cluster
from testbed.observe import Harness
from testbed.registry import FAMILIES, MODES, PROTOCOLS, SCHEDULERS, pairwise

# its checks hold on a busy guest (it may run beside another run: conftest.py)
pytestmark = pytest.mark.tolerates_load

SEQUENCE_FLOWS = 60  # per rr / wrr case
WEIGHTS = {"rr": (1, 1, 1), "wrr": (4, 3, 2), "sh": (2, 1, 1), "mh": (3, 1, 2)}
FLAGS = {"mh": ("mh-port",)}
NAT = MODES["nat"]


def _cases() -> list[tuple[str, str, str]]:
    rows = pairwise([list(WEIGHTS), list(PROTOCOLS), list(FAMILIES)])
    tcp, ipv4 = PROTOCOLS.names()[0], FAMILIES.names()[0]
    return [r for r in rows if (r[1], r[2]) != (tcp, ipv4)]


CASES = _cases()


@pytest.fixture(scope="module")
def harnesses(cluster: Cluster) -> Iterator[dict[tuple[str, str], Harness]]:
    made: dict[tuple[str, str], Harness] = {}
    yield made
    for h in made.values():
        h.close()


@pytest.fixture(params=CASES, ids=["-".join(c) for c in CASES])
def case(request: pytest.FixtureRequest, cluster: Cluster,
         harnesses: dict[tuple[str, str], Harness]) -> tuple[str, Harness]:  # fmt: skip
    scheduler, protocol, family = request.param
    skip_unless_family(cluster, FAMILIES[family])
    need(scheduler)
    skip_unless_available(cluster, needed_by=f"{scheduler} over {protocol}/{family}",
                          family=FAMILIES[family], mode=NAT.name, protocol=protocol)  # fmt: skip
    key = (protocol, family)
    if key not in harnesses:
        # its own range of virtual ports: no service of another case is revived
        harnesses[key] = Harness(
            cluster,
            mode=NAT.name,
            protocol=PROTOCOLS[protocol],
            family=FAMILIES[family],
            first_port=200 + 40 * len(harnesses),
        )
    return scheduler, harnesses[key]


def test_scheduler_choices_match_the_model(case: tuple[str, Harness]) -> None:
    """Every choice equals the model's: rr and wrr in sequence (60 flows), sh and mh per
    flow (256 flows from 64 source addresses, 4 ports each).

    Source: ip_vs_rr.c, ip_vs_wrr.c (the weighted interleaving), ip_vs_sh.c
    (256 buckets, hash_32 of the folded source address), ip_vs_mh.c (Maglev
    table of 4093 slots, with mh-port the source port in the hash).
    """
    scheduler, harness = case
    flags = FLAGS.get(scheduler, ())
    harness.configure(scheduler, weights=WEIGHTS[scheduler], flags=flags)
    model = model_for(harness, scheduler, flags)
    if SCHEDULERS[scheduler].flags:  # the hashing schedulers
        flows = hashed_flows(harness, 4)
    else:
        flows = [harness.flow() for _ in range(SEQUENCE_FLOWS)]
    name = f"{scheduler}-{harness.protocol.name}-{harness.base.service.family.name}"
    check(harness.compare(name, harness.sequence(model, flows)))
