"""Fixtures of the conformance suite: one cluster per session, one exchange per mode.

The network is built once (software emulation makes building slow) and
reconfigured per forwarding mode. Each mode's traffic is sent once, captured
at every interface, and the tests of that mode each check one promise
against the same capture.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from scapy.layers.inet import IP, TCP

from conformance.paths import Flow, Site
from testbed import Cluster, Frame, RealServer, ServiceState, load_topology
from testbed._kernel import modprobe, running_kernel_has_ipvs
from testbed._results import record_observation, record_timings

ROUNDS = 2  # requests per real server in an exchange


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--topology", default=None, help="cluster TOML (default topology)")


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    if os.geteuid() != 0 or not running_kernel_has_ipvs():
        pytest.exit(
            "the conformance suite needs root and a kernel with IPVS: run it with "
            "`lvs-testbed run`, which boots a guest kernel when this one lacks IPVS",
            returncode=2,
        )
    spec = load_topology(request.config.getoption("--topology"))
    c = Cluster(spec)
    try:
        c.start()
        record_timings(c.timings)
        yield c
    finally:
        c.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """On failure, append the director's IPVS table and the sysctls in force."""
    report = yield
    if report.failed and call.when == "call" and "cluster" in getattr(item, "fixturenames", ()):
        cluster: Cluster = item.funcargs["cluster"]  # type: ignore[attr-defined]
        report.sections.append(("LVS state at failure", cluster.describe()))
    return report


@dataclass
class Exchange:
    """Traffic sent once in one mode, and everything observed about it."""

    mode: str
    cluster: Cluster
    site: Site
    responses: list[str]
    frames: list[Frame]
    flows: list[Flow]
    state: ServiceState
    ipvsadm: str
    seconds: float = 0.0

    def frames_at(self, point: str) -> list[Frame]:
        return [f for f in self.frames if f.point == point]

    def tcp_frames(self, point: str, direction: str, **ip: str) -> list[Frame]:
        """TCP frames at a point in a direction whose (outer) IP fields match."""
        out = []
        for f in self.frames_at(point):
            pkt = f.packet
            if f.direction != direction or IP not in pkt or TCP not in pkt:
                continue
            if all(str(getattr(pkt[IP], k)) == v for k, v in ip.items()):
                out.append(f)
        return out


def site_of(cluster: Cluster) -> Site:
    spec = cluster.spec
    d, gw = spec.active.name, spec.router.name
    intfs = [f"{d}-eth0", f"{d}-eth1", f"{gw}-eth0", f"{gw}-eth1"]
    intfs += [f"{c.name}-eth0" for c in spec.clients]
    intfs += [f"{r.name}-eth0" for r in spec.real_servers]
    return Site(
        vip=str(spec.service.vip),
        port=spec.service.port,
        real_port=spec.service.real_port,
        director=d,
        director_inside_ip=str(spec.active.inside),
        router=gw,
        macs={i: cluster.mac(i) for i in intfs},
    )


def capture_points(cluster: Cluster) -> list[str]:
    spec = cluster.spec
    d, gw = spec.active.name, spec.router.name
    return [
        f"{spec.clients[0].name}-eth0",
        f"{d}-eth0",
        f"{d}-eth1",
        f"{gw}-eth0",
        f"{gw}-eth1",
        *(f"{r.name}-eth0" for r in spec.real_servers),
    ]


def curl_sequence(cluster: Cluster, client: str, count: int) -> list[str]:
    """``count`` HTTP requests to the VIP from one curl process, one connection each.

    Returns the body of each response (the real server's name; "" on failure).
    """
    s = cluster.spec.service
    url = f"http://{s.vip}:{s.port}/"
    out = cluster.run(
        client, f"curl -s --max-time 5 -w '\\n' {' '.join([url] * count)}", check=False
    )
    return [line.strip() for line in out.splitlines()][:count]


def send_exchange(cluster: Cluster, mode: str) -> Exchange:
    spec = cluster.base_spec.with_service(mode=mode, scheduler="rr")
    cluster.configure(spec)
    site = site_of(cluster)
    client = spec.clients[0]
    count = ROUNDS * len(spec.real_servers)
    started = time.monotonic()
    with cluster.capture(*capture_points(cluster)) as cap:
        responses = curl_sequence(cluster, client.name, count)
        time.sleep(1.0)  # let the last ACKs and FINs cross every hop
    seconds = time.monotonic() - started
    frames = cap.frames()
    # each connection: the client's SYN, and the real server whose SYN it reached
    by_point = {f"{r.name}-eth0": r for r in spec.real_servers}
    reached: dict[int, RealServer] = {}
    client_syns: list[int] = []
    for f in frames:
        pkt = f.packet
        if TCP not in pkt or pkt[TCP].flags != "S":
            continue
        sport = int(pkt[TCP].sport)
        if f.point == f"{client.name}-eth0" and f.direction == "out" and pkt[IP].dst == site.vip:
            client_syns.append(sport)
        elif f.point in by_point and f.direction == "in":
            reached.setdefault(sport, by_point[f.point])
    flows = [
        Flow(
            client=client.name,
            client_ip=str(client.ip),
            sport=sport,
            rs=reached[sport].name if sport in reached else "?",
            rs_ip=str(reached[sport].ip) if sport in reached else "?",
        )
        for sport in client_syns
    ]
    state = cluster.service_state()
    ipvsadm = cluster.run(spec.active.name, "ipvsadm -Ln")
    record_observation(
        f"forwarding.{mode}",
        {
            "requests": count,
            "responses_per_server": dict(Counter(responses)),
            "kernel_order": [d.addr for d in state.dests],
            "service_counters": vars(state.stats),
            "frames_captured": len(frames),
            "exchange_s": round(seconds, 2),
            "handshake_trace": _handshake_trace(frames, flows[0].sport) if flows else [],
        },
    )
    return Exchange(
        mode=mode,
        cluster=cluster,
        site=site,
        responses=responses,
        frames=frames,
        flows=flows,
        state=state,
        ipvsadm=ipvsadm,
        seconds=seconds,
    )


def _handshake_trace(frames: list[Frame], sport: int) -> list[dict[str, str]]:
    """SYN and SYN-ACK of one connection at every interface, in capture order."""
    trace = []
    for f in frames:
        pkt = f.packet
        if (
            TCP in pkt
            and sport in (pkt[TCP].sport, pkt[TCP].dport)
            and pkt[TCP].flags
            in (
                "S",
                "SA",
            )
        ):
            trace.append({"point": f.point, "direction": f.direction, "packet": pkt.summary()})
    return trace


def missing_module(*modules: str, needed_by: str) -> str | None:
    """The skip reason naming the first module this kernel cannot load, or None."""
    for module in modules:
        if not modprobe(module):
            return f"kernel lacks module {module} (needed by {needed_by})"
    return None


def mode_available(mode: str) -> str | None:
    """The reason a mode cannot run on this kernel, or None."""
    from testbed import MODES

    return missing_module(*MODES[mode].needs_modules, needed_by=mode.upper())


@pytest.fixture(scope="module", params=["nat", "dr", "tun"])
def exchange(request: pytest.FixtureRequest, cluster: Cluster) -> Exchange:
    mode = request.param
    if reason := mode_available(mode):
        pytest.skip(reason)
    return send_exchange(cluster, mode)
