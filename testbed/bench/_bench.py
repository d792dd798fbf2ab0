"""The bench: throughput, a connection-rate sweep and scale curves, VIP vs direct.

Every ratio is taken against the direct client-to-real-server path measured
in the same repetition; repetitions alternate the order of the paths, and a
control that drifts more than 10 % from its median flags the run. The scale
curves hold connections level by level (0 to 200,000 by default) through the
VIP and directly: the direct curve is the control for what the hosts' own
socket tables cost, so what is left is IPVS's. The curves are measured one
after another, minutes apart, so each level's rate is also taken against a
reference measured beside it, repetition by repetition: connections from the
same client to the router, which neither IPVS nor the real servers see. A
host that slows down or speeds up while the curves run moves both alike.
Goals are reported next to the figures, never turned into pass/fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen.stats import alternated, below_saturation, drifted, increments, merge_results, spread

from ..cluster import SERVER, Cluster
from ..ha import FAULTS
from ..load import (
    CONNECT_TOOLS,
    CONNS_PER_ADDRESS,
    IPERF_PORT,
    Holders,
    connect_rate,
    iperf,
    iperf_servers,
    prepare_for_scale,
    route_clients_inside,
    spread_sources,
    strip_samples,
)
from ..registry import MODES
from ..util import TestbedError, wait_until

DIRECT = "direct"
# a scale level's time-paired reference: the client to the router's own address, a
# path no director and no real server is on (so no table it fills)
REFERENCE = "reference"
REFERENCE_PORT = 5999
# The direct path runs with the real servers set up as for a mode whose replies
# bypass the director and whose packets are not wrapped (DR): replies go via the
# router, exactly as on the DR and TUN paths minus the director.
DIRECT_SETUP = next(
    m.name for m in MODES.values() if not m.reply_via_director and not m.encapsulates
)
# one mode per connection-state table: the director sees both directions, or input only
STATE_TABLE_MODES = tuple(m.name for m in MODES.first_per(lambda m: m.connection_table))
GOALS = {
    "throughput_ratio": {m.name: m.throughput_goal for m in MODES.values() if m.throughput_goal},
    "connect_rate_ratio": 0.90,
    "connect_p99_vs_direct": 1.2,  # at most
    "scale": {"resets": 0, "ipvs_vs_client": "exact", "rate_100k_vs_empty": 0.9},
}


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    repetitions: int = 5
    # the scale curve: connections held at each level, raised level by level; the
    # checks on held connections (count, resets, memory) are taken at every level
    scale_levels: tuple[int, ...] = (0, 10_000, 25_000, 50_000, 100_000, 200_000)
    hold: float = 60.0  # at the top level
    modes: tuple[str, ...] = MODES.names()
    # the scale curve's paths: the direct control, then one mode per state table
    scale_modes: tuple[str, ...] = (DIRECT, *STATE_TABLE_MODES)
    iperf_seconds: float = 5.0
    rate_connections: int = 2000
    # offered concurrency of the connection-rate client: the saturation sweep
    sweep: tuple[int, ...] = (1, 4, 16, 64)
    conn_tab_bits: int | None = None  # ip_vs's module parameter, given at the guest's boot
    failover_streams: int = 60  # 0: skip failover under load
    failover_syncs: tuple[str, ...] = ("ipvsadm", "off")
    failover_fault: str = "kill"  # keepalived SIGKILLed on the master (or stop, cut)
    connect_tool: str = "native"  # the compiled lvs-connrate, or "python" (loadgen.holder)

    def __post_init__(self) -> None:
        if self.connect_tool not in CONNECT_TOOLS:
            tools = ", ".join(CONNECT_TOOLS)
            raise TestbedError(f"unknown connect tool {self.connect_tool!r} (choose from {tools})")
        if self.failover_streams < 0:
            raise TestbedError("--failover-streams must be >= 0")
        if self.failover_fault not in FAULTS:
            raise TestbedError(
                f"unknown fault {self.failover_fault!r} (choose from {', '.join(FAULTS)})"
            )
        if self.repetitions < 1 or self.rate_connections < 1:
            raise TestbedError("repetitions and connection counts must be positive")
        try:
            increments(self.scale_levels)
        except ValueError as exc:
            raise TestbedError(str(exc)) from None
        if not self.sweep or min(self.sweep) < 1 or len(set(self.sweep)) < len(self.sweep):
            raise TestbedError("--sweep: distinct concurrencies, each >= 1")
        # CONFIG_IP_VS_TAB_BITS's range on 64-bit; the kernel may clamp further by
        # memory, so the size it took is read back (the table header), not assumed
        if self.conn_tab_bits is not None and not 8 <= self.conn_tab_bits <= 27:
            raise TestbedError("--conn-tab-bits must be 8..27 (ip_vs.conn_tab_bits)")
        if self.hold < 0 or self.iperf_seconds <= 0:
            raise TestbedError("--hold must be >= 0 and --iperf-seconds > 0")
        for mode in (*self.modes, *(m for m in self.scale_modes if m != DIRECT)):
            MODES[mode]


_TABLE_SIZE = re.compile(rb"\(size=(\d+)\)")


CONN_TAB_BITS = Path("/sys/module/ip_vs/parameters/conn_tab_bits")


def table_size(net: Path, bits: Path = CONN_TAB_BITS) -> dict[str, Any]:
    """The connection table's size as a namespace's /proc/net (``net``) shows it: the
    header of ip_vs (since 7.1 the current size of a resizable table, and ip_vs_status
    beside it); and ip_vs's conn_tab_bits where the module takes it."""
    out: dict[str, Any] = {}
    with open(net / "ip_vs", "rb") as f:
        if m := _TABLE_SIZE.search(f.readline()):
            out["table_size"] = int(m[1])
    if (net / "ip_vs_status").exists():
        out["ip_vs_status"] = (net / "ip_vs_status").read_text()[:4000]
    if bits.exists():
        out["conn_tab_bits"] = int(bits.read_text())
    return out


class Bench:
    """The bench's measurements on one running cluster; ``run()`` does them all in turn."""

    def __init__(
        self, cluster: Cluster, opts: BenchOptions, say: Callable[[str], None] = print
    ) -> None:
        self.cluster = cluster
        self.opts = opts
        self.say = say
        self._mode: tuple[Any, ...] | None = None
        # the connection-rate client's concurrency beside held connections: the
        # sweep's choice once it has run
        self._chosen_concurrency = min(opts.sweep)

    def _configure(self, mode: str, *, first_server_only: bool = False, **service: Any) -> None:
        """Switch mode/service only when it changes: configure() costs seconds here."""
        key = (mode, first_server_only, *sorted(f"{k}={v}" for k, v in service.items()))
        if key != self._mode:
            spec = self.cluster.base_spec.with_service(mode=mode, scheduler="rr", **service)
            if first_server_only:
                spec = spec.with_real_servers(spec.real_servers[0])
            self.cluster.configure(spec)
            self._mode = key

    def _repeat(self, measure: Callable[[str], dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """``measure(path)`` for every path, every repetition, in alternated order."""
        paths = [DIRECT, *self.opts.modes]
        runs: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
        for rep in range(self.opts.repetitions):
            for path in alternated(paths, rep):
                runs[path].append(measure(path) | {"repetition": rep})
        return runs

    @staticmethod
    def _ratios(runs: dict[str, list[dict[str, Any]]], key: str) -> dict[str, Any]:
        """Per mode: the figure over the direct figure of the same repetition."""
        direct = [r[key] for r in runs[DIRECT]]
        out = {}
        for path, rows in runs.items():
            if path != DIRECT:
                ratios = [r[key] / d if d else 0.0 for r, d in zip(rows, direct, strict=True)]
                out[path] = spread(ratios) | {"values": [round(x, 4) for x in ratios]}
        return {
            "ratios": out,
            "figures": {p: spread([r[key] for r in rows]) for p, rows in runs.items()},
            "control_drift": drifted(direct),
        }

    # -- throughput ---------------------------------------------------------------------
    def throughput(self) -> dict[str, Any]:
        """One iperf3 stream c1 -> r1, direct and through the VIP in every mode."""
        c = self.cluster
        client, rs = c.spec.clients[0].name, c.spec.real_servers[0]

        def measure(path: str) -> dict[str, Any]:
            # iperf3's control and data connections must reach the same server:
            # the throughput service has only the first real server
            self._configure(DIRECT_SETUP if path == DIRECT else path, first_server_only=True,
                            port=IPERF_PORT, nat_port=None)  # fmt: skip
            target = str(rs.ip) if path == DIRECT else str(c.spec.service.vip)
            r = iperf(c, client=client, target=target, seconds=self.opts.iperf_seconds)
            self.say(f"throughput {path}: {r.bits_per_second / 1e6:.0f} Mbit/s")
            return {"mbit_s": round(r.bits_per_second / 1e6, 2), "retransmits": r.retransmits}

        with iperf_servers(c):
            runs = self._repeat(measure)
        return {"tool": "iperf3", "client": client, "real_server": rs.name,
                "seconds": self.opts.iperf_seconds, "runs": runs,
                **self._ratios(runs, "mbit_s")}  # fmt: skip

    # -- connection rate ----------------------------------------------------------------
    def _targets(self, path: str) -> list[str]:
        """Where ``path``'s connections go, the cluster set up for it: the VIP, or for
        the direct path every real server's own address."""
        c = self.cluster
        if path == DIRECT:
            self._configure(DIRECT_SETUP)
            port = c.spec.service.real_port
            return [f"{r.ip}:{port}" for r in c.spec.real_servers]
        self._configure(path)
        return [f"{c.spec.service.vip}:{c.spec.service.port}"]

    def connect_rate(self) -> dict[str, Any]:
        """New connections (opened, then closed with RST) direct vs via the VIP, at each
        offered concurrency of the sweep; the headline ratio at the highest concurrency
        that does not yet queue on the direct path (``below_saturation``)."""
        sweep = sorted(self.opts.sweep)
        paths = [DIRECT, *self.opts.modes]
        runs: dict[int, dict[str, list[dict[str, Any]]]] = {
            c: {p: [] for p in paths} for c in sweep
        }
        for rep in range(self.opts.repetitions):
            for path in alternated(paths, rep):
                targets = self._targets(path)
                for conc in sweep if rep % 2 == 0 else sweep[::-1]:
                    row = self._rate_to(targets, f"{path} x{conc}", concurrency=conc)
                    runs[conc][path].append(row | {"repetition": rep})
        by_level = {c: self._rate_figures(runs[c]) for c in sweep}
        p50 = {c: by_level[c]["connect_p50_ms"]["figures"][DIRECT]["median"] for c in sweep}
        chosen = self._chosen_concurrency = below_saturation(p50)
        self.say(f"connect rate: ratios taken at concurrency {chosen} (direct p50 by "
                 f"concurrency: {p50})")  # fmt: skip
        return {"connections": self.opts.rate_connections, "concurrency": chosen,
                "sweep": {str(c): fig for c, fig in by_level.items()}, "runs": runs[chosen],
                **by_level[chosen]}  # fmt: skip

    @classmethod
    def _rate_figures(cls, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """Rate ratios to direct, and connect-time p50 and p99 (each against direct's of
        the same repetition): one concurrency's figures."""
        flat = {p: [{"p50": r["connect_ms"].get("p50", 0.0), "p99": r["connect_ms"].get("p99", 0.0)}
                    for r in rows] for p, rows in runs.items()}  # fmt: skip
        return cls._ratios(runs, "rate_per_s") | {
            "connect_p50_ms": cls._ratios(flat, "p50"),
            "connect_p99_ms": cls._ratios(flat, "p99"),
            "max_connect_ms": {p: max(r["connect_ms"].get("max", 0) for r in rows)
                               for p, rows in runs.items()},
        }  # fmt: skip

    def _rate_to(
        self, targets: list[str], label: str, concurrency: int | None = None
    ) -> dict[str, Any]:
        c = self.cluster
        conc = concurrency or self._chosen_concurrency
        r = connect_rate(c, client=c.spec.clients[0].name, targets=targets,
                         count=self.opts.rate_connections, tool=self.opts.connect_tool,
                         concurrency=conc)  # fmt: skip
        ms = r["connect_ms"]
        self.say(f"connect rate {label}: {r['rate_per_s']:.0f}/s, p50 {ms.get('p50')} ms, "
                 f"p99 {ms.get('p99')} ms, max {ms.get('max')} ms, "
                 f"{r['failed']} failed")  # fmt: skip
        return {"rate_per_s": r["rate_per_s"], "connect_ms": ms, "failed": r["failed"],
                "failures": r["failures"], "concurrency": conc}  # fmt: skip

    # -- scale --------------------------------------------------------------------------
    def _director_memory(self) -> dict[str, Any]:
        """IPVS connection slab (its own cache when the guest boots with slab_nomerge),
        guest-wide memory, the table's entries and its size as the kernel reports it."""
        meminfo = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, value = line.split(":", 1)
            if key in ("MemAvailable", "Slab", "SUnreclaim"):
                meminfo[f"{key}_kB"] = int(value.split()[0])
        out: dict[str, Any] = {"meminfo": meminfo}
        # SLUB may merge ip_vs_conn into a cache of the same size; then its
        # sysfs entry is a link to the shared cache and counts all its users
        slab = Path("/sys/kernel/slab/ip_vs_conn")
        if slab.exists():
            first = {f: int((slab / f).read_text().split()[0])
                     for f in ("slab_size", "objects", "slabs", "order")}  # fmt: skip
            out["ip_vs_conn_slab"] = {
                "cache": slab.resolve().name,
                "merged": slab.is_symlink(),
                **first,
                # what the cache holds in pages, partly filled slabs included
                "bytes": first["slabs"] * (4096 << first["order"]),
            }
        director = self.cluster.spec.active.name
        # netfilter's own table on the director, where loaded: it tracks what IPVS
        # forwards too, and a held connection may sit in both
        tracked = self.cluster.sysctls(director, "/proc/sys/net/netfilter/nf_conntrack_count")
        out["conntrack_entries"] = int(next(iter(tracked.values()))) if tracked else None
        pid = self.cluster.pid(director)
        with open(f"/proc/{pid}/net/ip_vs_conn", "rb") as f:
            out["ip_vs_conn_entries"] = sum(chunk.count(b"\n") for chunk in iter(
                lambda: f.read(1 << 20), b"")) - 1  # fmt: skip
        return out | table_size(Path(f"/proc/{pid}/net"))

    def _counts(self) -> tuple[int, int]:
        """The director's ActiveConn and InActConn over the service's real servers."""
        dests = self.cluster.service_state().dests
        return sum(d.active for d in dests), sum(d.inactive for d in dests)

    def _increment(
        self, held: int, level: int, used: dict[str, int]
    ) -> dict[str, tuple[list[str], int]]:
        """The holders' plan from ``held`` connections to ``level``: each client its share
        of the difference, from source addresses none of the steps before used
        (``used``: how many each client's steps took, updated). Topping up old ones
        would pile past CONNS_PER_ADDRESS on the first: a holder spreads its count
        evenly over the addresses it is given."""
        before, after = spread_sources(self.cluster, held), spread_sources(self.cluster, level)
        plan = {}
        for client, (_, share) in after.items():
            extra = share - before.get(client, ([], 0))[1]
            if extra > 0:
                first = used.get(client, 0)
                used[client] = first + math.ceil(extra / CONNS_PER_ADDRESS)
                plan[client] = (self.cluster.client_addresses(client, used[client])[first:], extra)
        return plan

    def _reference_targets(self) -> list[str]:
        """The reference's listener, started on the router the first time."""
        gw = self.cluster.spec.router
        self.cluster.ensure_program(gw.name, SERVER, "--name", gw.name,
                                    "--port", str(REFERENCE_PORT))  # fmt: skip
        return [f"{gw.outside}:{REFERENCE_PORT}"]

    def scale(self, path: str) -> dict[str, Any]:
        """The scale curve through ``path`` (a mode, or direct: the control without
        IPVS): connections held level by level, and at each level the table read and
        the connection rate measured (repetitions) beside what is held."""
        c, levels = self.cluster, self.opts.scale_levels
        targets = self._targets(path)
        through_ipvs = path != DIRECT
        # the previous section's entries (closed with RST) expire within seconds
        wait_until(lambda: self._director_memory()["ip_vs_conn_entries"] == 0, timeout=60,
                   interval=2)  # fmt: skip
        before = self._director_memory()
        points, ramps, held, used = [], [], 0, {}
        with contextlib.ExitStack() as stack:
            holders = []
            for was, level in increments(levels):
                if level > was:
                    self.say(f"scale {path}: opening {level - was} more (to {level})")
                    plan = self._increment(was, level, used)
                    h = stack.enter_context(Holders(c, targets=targets, plan=plan, hold=0))
                    ramped = h.wait_ramped(timeout=max(1200, (level - was) / 20))
                    holders.append(h)
                    ramps.append(strip_samples(ramped))
                    held += ramped["held"]
                points.append(self._level(path, targets, level, held, before))
            t_top = time.monotonic()
            time.sleep(max(0.0, t_top + self.opts.hold - time.monotonic()))
            active_end = self._counts()[0] if through_ipvs else None
            results = [h.release(timeout=max(600, levels[-1] / 50)) for h in holders]
        result = merge_results(results) if results else {"resets": 0, "established_at_end": 0,
                                                          "hold_s": 0.0}  # fmt: skip
        client_end = result["established_at_end"]
        self.say(f"scale {path}: held {self.opts.hold:.0f} s at {held}: {result['resets']} "
                 f"resets, client {client_end} vs IPVS {active_end} at the end")  # fmt: skip
        for key, figure in (
            ("rate_vs_lowest_level", lambda pt: pt["rate"]["figures"]),
            ("paired_vs_lowest_level", lambda pt: pt["vs_reference"]),
        ):
            base = figure(points[0]).get("rate_per_s", {}).get("median") if points else None
            for pt in points:
                med = figure(pt).get("rate_per_s", {}).get("median")
                pt[key] = round(med / base, 4) if base and med else None
        return {
            "path": path,
            "levels": list(levels),
            "points": points,
            "ramps": ramps,
            "held": held,
            "resets": result["resets"],
            "failed": sum(r.get("failed", 0) for r in ramps),
            "client_established_end": client_end,
            "ipvs_active_end": active_end,
            "exact": (active_end == client_end == levels[-1])
            if through_ipvs
            else client_end == levels[-1],
            "hold_s": result["hold_s"],
            "memory_before": before,
        }

    def _level(self, path: str, targets: list[str], level: int, held: int,
               before: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
        """One point of a scale curve: the table with ``held`` open, then the rate."""
        through_ipvs = path != DIRECT
        if through_ipvs:
            wait_until(lambda: self._counts()[0] >= held, timeout=120, interval=1)
        # the level below's rate measurements (closed with RST) leave their entries for
        # 10 s (CLOSE): the table is read once only the held ones are left
        wait_until(lambda: self._counts()[1] == 0, timeout=30, interval=0.5)
        mem = self._director_memory()
        active = self._counts()[0]
        point: dict[str, Any] = {"level": level, "held": held, "ipvs_active": active,
                                 "exact": active == held if through_ipvs else None,
                                 "memory": mem}  # fmt: skip
        slab, slab0 = mem.get("ip_vs_conn_slab", {}), before.get("ip_vs_conn_slab", {})
        grown = mem["ip_vs_conn_entries"] - before["ip_vs_conn_entries"]
        if slab and not slab.get("merged") and grown > 0:
            point["bytes_per_entry"] = round((slab["bytes"] - slab0.get("bytes", 0)) / grown, 1)
        rows, reference = [], []
        paired = {path: (targets, rows), REFERENCE: (self._reference_targets(), reference)}
        for rep in range(self.opts.repetitions):
            for which in alternated(list(paired), rep):
                # the last measurement's connections (closed with RST) stay in the table
                # for 10 s (CLOSE): the empty table's figure waits for them to go;
                # beside thousands held, they are counted instead (at most
                # rate_connections)
                if level == 0 and which != REFERENCE:
                    wait_until(lambda: self._counts()[1] == 0, timeout=30, interval=0.5)
                inactive = self._counts()[1]
                to, out = paired[which]
                row = self._rate_to(to, f"{which} with {held} held")
                out.append(row | {"repetition": rep, "inactive_before": inactive})
        point["rate"] = _rate_point(rows)
        point["reference"] = _rate_point(reference) | {"targets": paired[REFERENCE][0]}
        # each repetition's rate over the reference's measured beside it
        point["vs_reference"] = {"rate_per_s": spread([
            r["rate_per_s"] / ref["rate_per_s"] if ref["rate_per_s"] else 0.0
            for r, ref in zip(rows, reference, strict=True)
        ])}  # fmt: skip
        self.say(f"scale {path} at {held}: ActiveConn {active}, {mem['ip_vs_conn_entries']} "
                 f"entries, table {mem.get('table_size')}, conntrack "
                 f"{mem.get('conntrack_entries')}, rate median "
                 f"{point['rate']['figures']['rate_per_s'].get('median')}/s")  # fmt: skip
        return point

    # -- failover under load ------------------------------------------------------------
    def failover(self) -> dict[str, Any]:
        """N byte-checked streams through the VIP (DR), the master failed (default: its
        keepalived killed): what survives, with the sync daemon and without, and how
        long the data stops."""
        from ..ha import HaPair, Vrrp
        from ..observe import run_sync

        out = {}
        for sync in self.opts.failover_syncs:
            vrrp = Vrrp(version=3, advert_int=0.3)
            with HaPair(self.cluster, vrrp=vrrp, mode="dr", sync=sync) as ha:
                run = run_sync(ha, streams=self.opts.failover_streams, holds=0, late=0,
                               fault=self.opts.failover_fault)  # fmt: skip
            self._mode = None  # HaPair put the cluster's own configuration back
            out[sync] = {
                "fault": self.opts.failover_fault,
                "streams": run.streams,
                "survived": run.survived_streams,
                "survival_share": round(run.survived_streams / run.streams, 4),
                "reset": run.reset_streams,
                "stalled": run.stalled_streams,
                "byte_errors": len(run.byte_errors),
                "takeover_s": round(run.takeover_s, 3),
                "throughput_gap_s": run.throughput_gap_s,
                "longest_stream_gap_s": run.gap_s,
                "timeline": run.timeline,
            }
            self.say(f"failover sync={sync}: {run.survived_streams}/{run.streams} streams "
                     f"survived, gap {run.throughput_gap_s:.2f} s")  # fmt: skip
        return out

    # -- all ----------------------------------------------------------------------------
    def run(self, save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Every section in turn; ``save`` gets the figures so far after each one."""
        prepare_for_scale(self.cluster)
        route_clients_inside(self.cluster)
        data: dict[str, Any] = {"goals": GOALS, "options": dataclasses.asdict(self.opts),
                                "timings": {}, "scale": {}}  # fmt: skip
        steps = [("throughput", self.throughput), ("connect_rate", self.connect_rate)]
        steps += [(f"scale.{m}", functools.partial(self.scale, m)) for m in self.opts.scale_modes]
        if self.opts.failover_streams:
            steps.append(("failover", self.failover))
        for name, measure in steps:
            started = time.monotonic()
            self.say(f"--- {name}")
            section, _, mode = name.partition(".")
            if mode:
                data[section][mode] = measure()
            else:
                data[section] = measure()
            data["timings"][f"{name}_s"] = round(time.monotonic() - started, 1)
            save(data)
        self.cluster.stop_program(self.cluster.spec.router.name, SERVER)  # the reference's
        self.cluster.configure(self.cluster.base_spec)
        return data


def _rate_point(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One path's rate measurements at a scale level: the rows, median [min..max] of
    rate and connect-time p50 and p99, and whether the rate drifted."""
    rates = [r["rate_per_s"] for r in rows]
    return {"runs": rows, "figures": {
        "rate_per_s": spread(rates),
        "p50_ms": spread([r["connect_ms"].get("p50", 0.0) for r in rows]),
        "p99_ms": spread([r["connect_ms"].get("p99", 0.0) for r in rows]),
    }, "drifted": drifted(rates)}  # fmt: skip
