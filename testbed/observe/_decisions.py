"""Drive one IPVS service with a chosen scheduler and observe every decision.

Connections come from the first client's namespace (in-process, with chosen
source addresses and ports); which real server got each one is read from
the director's connection table; the kernel state a decision depended on
(weights, ActiveConn, InActConn, in list order) is read just before it. The
comparison with the model is a typed record; the test asserts on it.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..cluster import Cluster
from ..ipvs import read_connections, read_dest_counters
from ..net import Connector
from ..registry import PROTOCOLS, Family, Protocol
from ..sched import Dest, Flow, Model
from ..topology import RealServer
from ..util import wait_until
from ._records import SchedulerRecord, record

# Extra client addresses for hashing schedulers: our own, on the outside segment
SOURCE_COUNT = 64


@dataclass
class Decision:
    flow: Flow
    expected: str | None
    got: str | None
    state: list[Dest] = field(default_factory=list)

    def describe(self) -> str:
        load = ", ".join(f"{d.name}(w={d.weight} a={d.active} i={d.inactive})" for d in self.state)
        f = self.flow
        return f"{f.saddr}:{f.sport} -> {f.daddr}: expected {self.expected}, got {self.got}" + (
            f" [state {load}]" if load else ""
        )


class Harness:
    """One scheduler service on the shared cluster, plus a client that records choices.

    The service uses one forwarding mode throughout (``mode``): schedulers pick
    a real server before the packet is transmitted and never look at the
    method (ip_vs_core.c ip_vs_schedule).
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        mode: str = "nat",
        protocol: Protocol | None = None,
        family: Family | None = None,
        first_port: int = 81,
    ) -> None:
        self.cluster = cluster
        self.mode = mode
        self.protocol = protocol or PROTOCOLS["tcp"]
        # the cluster in the harness's family: its addresses, VIP and real servers
        self.base = cluster.base_spec.in_family(family or cluster.base_spec.service.family)
        spec = self.base
        self.client = spec.clients[0]
        self.director_pid = cluster.pid(spec.active.name)
        self.sources = cluster.client_addresses(self.client.name, SOURCE_COUNT, spec=spec)
        # refused flows (no server) are answered with ICMP port unreachable:
        # no rate limit, or the client would wait for a timeout instead
        cluster.run(spec.active.name, f"sysctl -qw {spec.service.family.icmp_ratelimit}=0")
        self._ports = itertools.count(20000)
        # every configure() gets a new virtual port: the kernel may revive a
        # deleted real server of the same VIP:port from its trash
        # (ip_vs_trash_get_dest), with connections lingering from an earlier test
        self._vports = itertools.count(first_port)
        self.connector = Connector(
            cluster.pid(self.client.name), timeout=10.0, protocol=self.protocol
        )
        self.names = {str(r.ip): r.name for r in spec.real_servers}
        self.errors: list[str] = []  # failed connects, for failure messages

    def close(self) -> None:
        self.connector.close()
        self.cluster.configure(self.cluster.base_spec)  # as other suites expect it

    @property
    def server_names(self) -> list[str]:
        """The real servers, in the topology's order."""
        return [r.name for r in self.base.real_servers]

    # -- configuration -------------------------------------------------------------------
    def configure(
        self,
        scheduler: str,
        *,
        weights: Sequence[int] | None = None,
        flags: Iterable[str] = (),
        upper: Sequence[int] | None = None,
        fwmark: int = 0,
    ) -> None:
        """A fresh service (scheduler state reset) with the given weights and thresholds;
        with ``fwmark``, a service of that mark (see marked_block) instead of the VIP's."""
        self.connector.close_all()
        spec = self.base  # not the previous test's weights and thresholds
        n = len(spec.real_servers)
        servers = []
        for i, rs in enumerate(spec.real_servers):
            changes: dict[str, int] = {}
            if weights is not None:
                changes["weight"] = spread_over(weights, n)[i]
            if upper is not None:
                changes["upper_threshold"] = spread_over(upper, n)[i]
            servers.append(dataclasses.replace(rs, **changes))
        new = spec.with_real_servers(*servers).with_service(
            scheduler=scheduler,
            sched_flags=tuple(flags),
            mode=self.mode,
            protocol=self.protocol.name,
            port=next(self._vports),
            fwmark=fwmark,
        )
        self.cluster.configure(new)

    def set_weight(self, name: str, weight: int) -> None:
        rs = self.cluster.spec.real_server(name)
        self.cluster.ipvs.set_weight(self.cluster.spec.service, rs, weight)

    def real_server(self, name: str) -> RealServer:
        return self.cluster.spec.real_server(name)

    # -- observation -----------------------------------------------------------------------
    def dests(self) -> list[Dest]:
        """Real servers in the kernel's list order, with weights and current counters."""
        state = self.cluster.service_state()
        return [
            Dest(
                name=self.names[d.addr],
                addr=d.addr,
                port=d.port,
                weight=d.weight,
                active=d.active,
                inactive=d.inactive,
                upper=d.upper_threshold,
                lower=d.lower_threshold,
            )
            for d in state.dests
        ]

    def flow(self, saddr: str | None = None, sport: int | None = None,
             daddr: str | None = None) -> Flow:  # fmt: skip
        """A flow from the client (or ``saddr``) to the VIP (or ``daddr``, of a marked
        block) and the service's port."""
        s = self.cluster.spec.service
        return Flow(
            saddr=saddr or str(self.client.ip),
            sport=sport if sport is not None else next(self._ports),
            daddr=daddr or str(s.vip),
            dport=s.port,
        )

    def _send(self, flow: Flow) -> bool:
        """Open (and hold) one connection: True if it was established."""
        try:
            self.connector.open(flow.saddr, flow.sport, (flow.daddr, flow.dport))
            return True
        except OSError as exc:
            self.errors.append(f"{flow.saddr}:{flow.sport} -> {flow.daddr}:{flow.dport}: {exc!r}")
        return False

    def connect(self, flow: Flow) -> str | None:
        """Open (and hold) one connection; the real server the director chose.

        The answer is the director's decision, read from its connection
        table, even if the connection itself then failed somewhere else on
        the path (the error is kept in ``errors``); None if the director
        scheduled nothing (no entry: refused, no server available).
        """
        return self._chosen([flow], [self._send(flow)])[0]

    def _chosen(self, flows: Sequence[Flow], worked: Sequence[bool]) -> list[str | None]:
        """The real server of each flow's entry, in one read of the table where it can.

        /proc/net/ip_vs_conn is read in chunks while the table changes, so a
        walk can miss an entry: a flow that worked must have one, and is looked
        for again for up to 2 s.
        """
        s = self.cluster.spec.service
        client = (flows[0].saddr, flows[0].sport) if len(flows) == 1 else None
        deadline = time.monotonic() + (2.0 if any(worked) else 0.0)
        found: dict[tuple[str, int], str | None] = {}
        while True:
            for conn in read_connections(self.director_pid, client=client):
                if conn.virtual[1] == s.port:
                    found.setdefault(conn.client, self.names.get(conn.dest[0]))
            pairs = zip(flows, worked, strict=True)
            missing = any(ok and (f.saddr, f.sport) not in found for f, ok in pairs)
            if not missing or time.monotonic() >= deadline:
                return [found.get((f.saddr, f.sport)) for f in flows]
            time.sleep(0.05)

    def active_total(self) -> int:
        return sum(c.active for c in read_dest_counters(self.director_pid).values())

    def wait_active(self, total: int) -> bool:
        """Until the director counts ``total`` ESTABLISHED connections."""
        return wait_until(lambda: self.active_total() == total, timeout=10)

    def compare(self, name: str, decisions: list[Decision], **figures: object) -> Comparison:
        """``compare``, with this harness's failed connects for the explanation."""
        return compare(name, decisions, self.errors, **figures)

    # -- the two kinds of check --------------------------------------------------------------
    def sequence(self, model: Model, flows: Sequence[Flow]) -> list[Decision]:
        """Model and kernel pick for the same flows in order (stateful model, e.g. rr)."""
        out = []
        # sent in chunks, each chunk's entries read at once: a read per flow parses a
        # growing table every time, and entries of refused flows (CLOSE) last seconds
        for start in range(0, len(flows), 16):
            chunk = flows[start : start + 16]
            wants = [model.schedule(f) for f in chunk]
            got = self._chosen(chunk, [self._send(f) for f in chunk])
            out += [
                Decision(flow=f, expected=w.name if w else None, got=g)
                for f, w, g in zip(chunk, wants, got, strict=True)
            ]
        if out:
            out[-1].state = self.dests()  # shown if the comparison fails
        return out

    def stepwise(self, model_cls: type[Model], count: int, **kw: object) -> list[Decision]:
        """Before each new connection, predict from the kernel's own current counters.

        Connections are held open, so each decision changes the state of the next.
        """
        out = []
        established = self.active_total()
        for _ in range(count):
            state = self.dests()
            f = self.flow()
            want = model_cls(state, **kw).schedule(f)  # type: ignore[arg-type]
            got = self.connect(f)
            out.append(Decision(flow=f, expected=want.name if want else None, got=got, state=state))
            if got is not None:
                established += 1
                self.wait_active(established)
        return out


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """The kernel's choices against a model's, recorded; ``wrong`` is what differs."""

    record: SchedulerRecord
    wrong: list[Decision]
    decisions: list[Decision]
    errors: list[str]

    def explain(self) -> str:
        """Expected vs got for the first differing choices, with the kernel's last state."""
        r, last = self.record, self.decisions[-1] if self.decisions else None
        return (
            f"{r.key}: {len(self.wrong)} of {r.flows} choices differ from the model; "
            "first ones:\n"
            + "\n".join("  " + d.describe() for d in self.wrong[:10])
            + f"\n  observed per server {r.observed}, model {r.expected}"
            + (f"\n  last kernel state: {last.state}" if last and last.state else "")
            + (f"\n  failed connects (last 5): {self.errors[-5:]}" if self.errors else "")
        )


def compare(
    name: str, decisions: list[Decision], errors: Sequence[str] = (), **figures: object
) -> Comparison:
    """Every kernel choice against the model's, recorded for the report."""
    got = Counter(str(d.got) for d in decisions)
    want = Counter(str(d.expected) for d in decisions)
    wrong = [d for d in decisions if d.expected != d.got]
    rec = record(
        SchedulerRecord(
            key=name,
            flows=len(decisions),
            observed=dict(sorted(got.items())),
            expected={k: float(v) for k, v in sorted(want.items())},
            mismatches=len(wrong),
            check="every choice equals the model's",
            figures=dict(figures),
        )
    )
    return Comparison(record=rec, wrong=wrong, decisions=decisions, errors=list(errors))


def spread_over(values: Sequence[int], count: int) -> tuple[int, ...]:
    """``values`` laid over ``count`` real servers, repeated as needed: a test's pattern of
    weights (or loads) for any topology; the pattern itself for as many servers as it has."""
    return tuple(values[i % len(values)] for i in range(count))
