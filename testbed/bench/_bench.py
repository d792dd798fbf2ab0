"""The bench: throughput, connection rate and 100k held connections, VIP vs direct.

Every ratio is taken against the direct client-to-real-server path measured
in the same repetition; repetitions alternate the order of the paths, and a
control that drifts more than 10 % from its median flags the run. Goals are
reported next to the figures, never turned into pass/fail.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen.stats import alternated, drifted, spread

from ..cluster import Cluster
from ..ha import FAULTS
from ..load import (
    CONNECT_TOOLS,
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
    "connect_rate_ratio": 0.80,
    "connect_max_ms": 100.0,
    "scale": {"resets": 0, "ipvs_vs_client": "exact"},
}


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    repetitions: int = 5
    connections: int = 100_000
    hold: float = 60.0
    modes: tuple[str, ...] = MODES.names()
    scale_modes: tuple[str, ...] = STATE_TABLE_MODES
    iperf_seconds: float = 5.0
    rate_connections: int = 2000
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
        if self.repetitions < 1 or self.connections < 1 or self.rate_connections < 1:
            raise TestbedError("repetitions and connection counts must be positive")
        if self.hold < 0 or self.iperf_seconds <= 0:
            raise TestbedError("--hold must be >= 0 and --iperf-seconds > 0")
        for mode in (*self.modes, *self.scale_modes):
            MODES[mode]


class Bench:
    """The bench's measurements on one running cluster; ``run()`` does them all in turn."""

    def __init__(
        self, cluster: Cluster, opts: BenchOptions, say: Callable[[str], None] = print
    ) -> None:
        self.cluster = cluster
        self.opts = opts
        self.say = say
        self._mode: tuple[Any, ...] | None = None

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
    def _rate(self, path: str) -> dict[str, Any]:
        c = self.cluster
        if path == DIRECT:
            self._configure(DIRECT_SETUP)
            port = c.spec.service.real_port
            targets = [f"{r.ip}:{port}" for r in c.spec.real_servers]
        else:
            self._configure(path)
            targets = [f"{c.spec.service.vip}:{c.spec.service.port}"]
        return self._rate_to(targets, path)

    def connect_rate(self) -> dict[str, Any]:
        """New connections (opened, then closed with RST) direct vs via the VIP."""
        runs = self._repeat(self._rate)
        worst = {p: max(r["connect_ms"].get("max", 0) for r in rows) for p, rows in runs.items()}
        return {"connections": self.opts.rate_connections, "runs": runs, "max_connect_ms": worst,
                **self._ratios(runs, "rate_per_s")}  # fmt: skip

    # -- scale --------------------------------------------------------------------------
    def _director_memory(self) -> dict[str, Any]:
        """IPVS connection slab (if not merged into another cache) and guest-wide memory."""
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
            out["ip_vs_conn_slab"] = {
                "cache": slab.resolve().name,
                "merged": slab.is_symlink(),
                "slab_size": int((slab / "slab_size").read_text()),
                "objects": int((slab / "objects").read_text().split()[0]),
            }
        pid = self.cluster.pid(self.cluster.spec.active.name)
        with open(f"/proc/{pid}/net/ip_vs_conn", "rb") as f:
            out["ip_vs_conn_entries"] = sum(chunk.count(b"\n") for chunk in iter(
                lambda: f.read(1 << 20), b"")) - 1  # fmt: skip
        return out

    def _active(self) -> int:
        return sum(d.active for d in self.cluster.service_state().dests)

    def scale(self, mode: str) -> dict[str, Any]:
        """Hold ``connections`` through the VIP; count, measure memory and rate."""
        c, n = self.cluster, self.opts.connections
        self._configure(mode)
        vip = c.spec.service
        target = f"{vip.vip}:{vip.port}"
        plan = spread_sources(c, n)
        # the previous run's entries (closed with RST) expire within seconds
        wait_until(lambda: self._director_memory()["ip_vs_conn_entries"] == 0, timeout=60,
                   interval=2)  # fmt: skip
        before = self._director_memory()
        empty = self._rate_to([target], f"{mode}, table empty")
        # entries the rate measurement left counted as active (expected 0)
        active_before = self._active()
        addresses = sum(len(s) for s, _ in plan.values())
        self.say(f"scale {mode}: opening {n} connections from {addresses} source addresses")
        with Holders(c, targets=[target], plan=plan, hold=self.opts.hold) as holders:
            ramped = holders.wait_ramped(timeout=max(1200, n / 20))
            t_ramped = time.monotonic()
            wait_until(lambda: self._active() >= ramped["held"], timeout=60, interval=1)
            active_start = self._active()
            full_mem = self._director_memory()
            self.say(f"scale {mode}: {ramped['held']} open in {ramped['ramp_s']:.0f} s, ActiveConn "
                     f"{active_start}; measuring the rate with the table full")  # fmt: skip
            full = self._rate_to([target], f"{mode}, table full")
            time.sleep(max(0.0, t_ramped + self.opts.hold - time.monotonic()))
            active_end = self._active()
            result = holders.release(timeout=max(600, n / 50))
        client_end = result["established_at_end"]
        self.say(f"scale {mode}: held {result['hold_s']:.0f} s: {result['resets']} resets, "
                 f"client {client_end} vs IPVS {active_end} at the end")  # fmt: skip
        slab = full_mem.get("ip_vs_conn_slab", {})
        ipvs_bytes = full_mem["ip_vs_conn_entries"] * slab.get("slab_size", 0)
        avail = before["meminfo"]["MemAvailable_kB"] - full_mem["meminfo"]["MemAvailable_kB"]
        return {
            "mode": mode,
            "connections": n,
            "source_addresses": {k: len(s) for k, (s, _) in plan.items()},
            "ramped": strip_samples(ramped),
            "result": strip_samples(result) | {"ramp": []},
            "ipvs_active_before": active_before,
            "ipvs_active_start": active_start,
            "ipvs_active_end": active_end,
            "client_established_end": client_end,
            "exact": active_end == client_end == n,
            "resets": result["resets"],
            "memory_before": before,
            "memory_full": full_mem,
            "ip_vs_conn_slab_size": slab.get("slab_size"),
            "ip_vs_conn_table_bytes": ipvs_bytes,
            "guest_mem_used_kB": avail,
            "rate_empty": empty,
            "rate_full": full,
            "rate_full_vs_empty": round(full["rate_per_s"] / empty["rate_per_s"], 4)
            if empty["rate_per_s"]
            else None,
        }

    def _rate_to(self, targets: list[str], label: str) -> dict[str, Any]:
        c = self.cluster
        r = connect_rate(c, client=c.spec.clients[0].name, targets=targets,
                         count=self.opts.rate_connections, tool=self.opts.connect_tool)  # fmt: skip
        ms = r["connect_ms"]
        self.say(f"connect rate {label}: {r['rate_per_s']:.0f}/s, p99 {ms.get('p99')} ms, "
                 f"max {ms.get('max')} ms, {r['failed']} failed")  # fmt: skip
        return {"rate_per_s": r["rate_per_s"], "connect_ms": ms, "failed": r["failed"],
                "failures": r["failures"]}  # fmt: skip

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
        self.cluster.configure(self.cluster.base_spec)
        return data
