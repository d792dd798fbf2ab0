"""The two directors as a failover pair: keepalived VRRP, the IPVS sync daemon, faults.

``HaPair`` takes a running Cluster, hands VIP and DIP to keepalived (one
daemon per director, each with its own files), gives both directors the same
IPVS table (the cluster's service plus a stream and a hold service served by
``loadgen.stream``), optionally starts connection sync, and on exit puts
everything back: daemons stopped, addresses and links restored, the backup's
IPVS table flushed.

>>> with HaPair(cluster, vrrp=Vrrp(), sync="ipvsadm") as ha:
...     fault_at = ha.fail("kill")
...     ha.keepalived["d2"].wait_state("MASTER", timeout=10, after=fault_at)
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import replace

from ..cluster import Cluster
from ..ipvs import Conn, read_connections
from ..load import HOLD_PORT, STREAM_PORT, ensure_stream_servers
from ..registry import Family
from ..topology import ClusterSpec, Service
from ..util import Scoped, TestbedError
from ._keepalived import Keepalived, Vrrp, render
from ._vrrp import (
    FAULTS,
    GarpExpectation,
    TakeoverWindow,
    master_down_interval,
    takeover_window,
)

# off; ipvsadm daemons master+backup on both directors (two-way); ipvsadm master
# on the preferred director and backup on the other (one-way); keepalived's
# lvs_sync_daemon (role follows VRRP state)
SYNC_MODES = ("off", "ipvsadm", "oneway", "keepalived")


class DirectorPair(Scoped):
    """What every HA backend shares: two directors, faults, who holds the VIP.

    A backend provides start_daemon/stop_daemon/kill_daemon, wait_takeover,
    wait_failback, window(fault), garp, failback_bound, label and probe_port.
    """

    backup_priority: int  # VRRP adverts below it, seen by a new master, trigger GARPs
    # faults after which the failed director still holds the VIP: a killed
    # daemon cannot remove it
    keeps_vip: tuple[str, ...] = ("kill",)
    # faults whose takeover window counts from the failed director's release of
    # the VIP (a handover), not from the fault itself
    counted_from_release: tuple[str, ...] = ()
    released_at: float | None = None  # when the failed director's VIP was seen gone
    # where a daemon runs scripts between deciding to take over and doing it, the
    # window is checked on its decision (as its own log records it, to this many
    # seconds), and the scripts get up to scripts_bound s after it
    decision_resolution: float = 0.0
    scripts_bound: float = 0.0

    def __init__(self, cluster: Cluster, *, mode: str, family: Family | None = None) -> None:
        if reason := cluster.base_spec.needs(directors=2):
            raise TestbedError(reason)
        self.cluster = cluster
        self.mode = mode
        # the cluster in the pair's address family (default: the topology's own)
        base = cluster.base_spec.in_family(family) if family else cluster.base_spec
        self.spec: ClusterSpec = base.with_service(mode=mode, scheduler="rr")
        # the preferred director and its backup: the topology's first two
        self.names = tuple(d.name for d in self.spec.directors[:2])
        self._cut: set[str] = set()  # bridge ports set down by a "cut" fault

    def start_daemon(self, director: str) -> None:
        raise NotImplementedError

    def decided_at(self, after: float) -> float | None:
        """When the backup's daemon decided to take over, by its own record; None where
        the takeover itself (its first gratuitous ARP) is the decision."""
        return None

    def transitions(self, director: str) -> list[tuple[float, str]]:
        """(time, state) changes the daemon reported, where it reports any."""
        return []

    def daemon_log(self, director: str) -> list[tuple[float, str]]:
        """(time, message) of the VRRP daemon's log, to the second, where it keeps one."""
        return []

    def stop_daemon(self, director: str) -> None:
        raise NotImplementedError

    def kill_daemon(self, director: str) -> None:
        raise NotImplementedError

    def holders(self) -> list[str]:
        """Directors that have the VIP (read from their namespaces' /proc, no process)."""
        vip, family = str(self.spec.service.vip), self.spec.service.family
        return [d for d in self.names if vip in family.local_addresses(self.cluster.pid(d))]

    # -- faults -----------------------------------------------------------------------
    def fail(self, fault: str, director: str | None = None) -> float:
        """Inflict a fault on a director (default: the preferred one); return its time."""
        d = director or self.names[0]
        if fault not in FAULTS:
            raise TestbedError(f"unknown fault {fault!r} (choose from {', '.join(FAULTS)})")
        self.released_at = None
        at = time.time()
        if fault == "stop":
            self.stop_daemon(d)
        elif fault == "kill":
            self.kill_daemon(d)
        else:
            self.cut(self.cluster.switch_port(f"{d}-eth0"))
        return at

    def recover(self, fault: str, director: str | None = None) -> float:
        """Undo a fault: link back up, or keepalived started again. Returns the time."""
        d = director or self.names[0]
        at = time.time()
        if fault == "cut":
            self.restore(self.cluster.switch_port(f"{d}-eth0"))
        else:
            # a crashed daemon left VIP and DIP behind, as a real crash would;
            # a restart (or reboot) starts without them
            self.after_crash(d)
            self.start_daemon(d)
        return at

    def after_crash(self, director: str) -> None:
        """What a restart finds: no VIP or DIP left from before."""
        self.drop_service_addresses(director)

    def cut(self, port: str) -> None:
        subprocess.run(["ip", "link", "set", port, "down"], check=True)
        self._cut.add(port)

    def restore(self, port: str) -> None:
        subprocess.run(["ip", "link", "set", port, "up"], check=False)
        self._cut.discard(port)

    def drop_service_addresses(self, director: str) -> None:
        """VIP and DIP off a director, whatever prefix the daemon gave them."""
        self.cluster.release_service_addresses(director)
        # heartbeat's IPaddr2 gives the VIP the subnet's prefix, not /32
        vip = f"{self.spec.service.vip}/{self.spec.outside.prefixlen}"
        self.cluster.run(director, f"ip addr del {vip} dev {director}-eth0 2>/dev/null; true")

    def restore_all(self) -> None:
        """Links up, service addresses off both directors (daemons already stopped)."""
        for d in self.names:
            self.drop_service_addresses(d)
        for port in list(self._cut):
            self.restore(port)


class HaPair(DirectorPair):
    """Two directors, d1 preferred, under keepalived VRRP."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        vrrp: Vrrp | None = None,
        mode: str = "dr",
        sync: str = "off",
        family: Family | None = None,
    ) -> None:
        if sync not in SYNC_MODES:
            raise TestbedError(f"unknown sync mode {sync!r} (choose from {', '.join(SYNC_MODES)})")
        super().__init__(cluster, mode=mode, family=family)
        self.vrrp = replace(vrrp or Vrrp(), sync_daemon=sync == "keepalived")
        self.sync = sync
        base = self.spec.service
        self.services: dict[str, Service] = {
            "http": base,
            "stream": replace(base, port=STREAM_PORT, nat_port=None),
            "hold": replace(base, port=HOLD_PORT, nat_port=None),
        }
        self.keepalived = {
            n: Keepalived(host=cluster.node(n), workdir=cluster.workdir) for n in self.names
        }
        self.backup_priority = self.vrrp.priorities[1]

    # -- life cycle -------------------------------------------------------------------
    def start(self) -> None:
        c = self.cluster
        c.configure(self.spec)  # real servers prepared for the mode
        ensure_stream_servers(c)
        table = [(svc, self.spec.real_servers) for svc in self.services.values()]
        for d in self.names:
            c.ipvs_of(d).apply_all(table)
        c.release_service_addresses()
        c.diagnostics.append(self.describe)
        self._start_sync()
        started = time.time()
        self._start_both(after=started)

    def stop(self) -> None:
        c = self.cluster
        for k in self.keepalived.values():
            k.stop()
        for d in self.names:
            self.stop_sync(d)
        self.restore_all()
        with contextlib.suppress(Exception):
            c.ipvs_of(self.names[1]).flush()
        with contextlib.suppress(ValueError):
            c.diagnostics.remove(self.describe)
        c.claim_service_addresses()
        c.configure(c.base_spec)

    # -- keepalived ---------------------------------------------------------------------
    def config(self, director: str) -> str:
        k = self.keepalived[director]
        return render(
            self.spec,
            self.spec.directors[self.names.index(director)],
            vrrp=self.vrrp,
            notify=k.notify_script(),
        )

    def start_daemon(self, director: str) -> None:
        self.keepalived[director].start(self.config(director))

    def stop_daemon(self, director: str) -> None:
        self.keepalived[director].stop()

    def transitions(self, director: str) -> list[tuple[float, str]]:
        return self.keepalived[director].states()

    def daemon_log(self, director: str) -> list[tuple[float, str]]:
        return self.keepalived[director].log_lines()

    def kill_daemon(self, director: str) -> None:
        self.keepalived[director].kill()

    def reconfigure(self, vrrp: Vrrp) -> None:
        """Restart both daemons with other VRRP settings (sync mode unchanged)."""
        if vrrp == replace(self.vrrp, sync_daemon=False) or vrrp == self.vrrp:
            return
        for k in self.keepalived.values():
            k.stop()
        self.vrrp = replace(vrrp, sync_daemon=self.sync == "keepalived")
        started = time.time()
        self._start_both(after=started)

    @property
    def _start_bound(self) -> float:
        return 10 * self.vrrp.advert_int + 15  # master-down at start, plus emulation

    def _start_both(self, *, after: float) -> None:
        """Both daemons started, the preferred director first, then their roles."""
        first, *others = self.names
        self.start_daemon(first)
        if not self.vrrp.preempt:
            # without preemption the first to reach MASTER keeps it: the preferred one
            # must be MASTER before its peer starts (started 170 ms after its peer
            # under emulation, it stayed BACKUP; keepalived.conf(5) nopreempt)
            self.keepalived[first].wait_state("MASTER", timeout=self._start_bound, after=after)
        for d in others:
            self.start_daemon(d)
        self.wait_roles(after=after)

    def wait_roles(self, *, after: float) -> None:
        """Until the preferred director is MASTER and the other BACKUP."""
        bound = self._start_bound
        first, second = (self.keepalived[n] for n in self.names)
        first.wait_state("MASTER", timeout=bound, after=after)
        if second.state != "BACKUP":
            second.wait_state("BACKUP", timeout=bound, after=after)
        # at start the backup may have been master for a moment and announced
        # itself: settle on one VIP holder, then let clients ask ARP afresh
        deadline = time.monotonic() + bound
        while self.holders() != [self.names[0]]:
            if time.monotonic() > deadline:
                raise AssertionError(f"VIP held by {self.holders()} after start\n{self.describe()}")
            time.sleep(0.1)
        # a backup that was master for a moment left its delayed GARP burst armed
        # (garp_master_delay after each transition to MASTER, keepalived vrrp.c
        # vrrp_state_master_tx; leaving MASTER does not cancel the timer): it fires
        # while the VIP is elsewhere, and sends nothing, before any test looks
        if self.vrrp.garp_delay:
            armed = [t + self.vrrp.garp_delay for t, s in second.states()
                     if s == "MASTER" and t >= after]  # fmt: skip
            if armed and (wait := max(armed) + 0.5 - time.time()) > 0:
                time.sleep(wait)
        self.cluster.forget_neighbours()

    # -- the failover interface shared with HeartbeatPair --------------------------------
    probe_port = HOLD_PORT
    # s past the formula: probe interval and software emulation on a shared host
    # (timers never fire early, so the lower bound stays strict)
    slack = 1.0

    @property
    def label(self) -> str:
        return f"keepalived-{self.vrrp.label}"

    @property
    def garp(self) -> GarpExpectation:
        v = self.vrrp
        return GarpExpectation(repeat=v.garp_repeat, delay=v.garp_delay, interval=v.garp_interval)

    def window(self, fault: str) -> TakeoverWindow:
        v = self.vrrp
        return takeover_window(
            fault, priority=v.priorities[1], advert_int=v.advert_int, version=v.version
        )

    @property
    def failback_bound(self) -> float:
        """The returning master preempts at the latest one master-down interval after start."""
        v = self.vrrp
        return master_down_interval(
            priority=v.priorities[0], advert_int=v.advert_int, version=v.version
        )

    def wait_takeover(self, after: float) -> float:
        """Time the backup's keepalived reported MASTER (notify script)."""
        timeout = 3 * self.vrrp.advert_int + 15
        return self.keepalived[self.names[1]].wait_state("MASTER", timeout=timeout, after=after)

    def wait_failback(self, after: float) -> float:
        first, second = (self.keepalived[n] for n in self.names)
        at = first.wait_state("MASTER", timeout=6 * self.vrrp.advert_int + 20, after=after)
        second.wait_state("BACKUP", timeout=10, after=after)
        return at

    # -- connection sync ----------------------------------------------------------------
    def _start_sync(self) -> None:
        roles = {
            "off": {},
            "keepalived": {},  # keepalived starts and switches the daemons itself
            "ipvsadm": {d: ("master", "backup") for d in self.names},
            "oneway": {self.names[0]: ("master",), self.names[1]: ("backup",)},
        }[self.sync]
        for d, wanted in roles.items():
            for role in wanted:
                self.cluster.run(
                    d,
                    f"ipvsadm --start-daemon {role} --mcast-interface {d}-eth1 "
                    f"--syncid {self.vrrp.sync_id}",
                )

    def stop_sync(self, director: str) -> None:
        for role in ("master", "backup"):
            self.cluster.run(director, f"ipvsadm --stop-daemon {role}", check=False)

    def connections(self, director: str, *ports: int) -> dict[tuple[str, int], Conn]:
        """The director's IPVS connection table by client (addr, port), for some VIP ports
        (read twice: an entry expiring during one reading hides a live one)."""
        return {
            c.client: c
            for c in read_connections(self.cluster.pid(director), reads=2)
            if not ports or c.virtual[1] in ports
        }

    # -- diagnostics ------------------------------------------------------------------
    def describe(self) -> str:
        out = [f"--- HA pair: vrrp={self.vrrp} sync={self.sync} VIP held by {self.holders()}"]
        for d in self.names:
            k = self.keepalived[d]
            out.append(f"--- {d}: keepalived state {k.state}, transitions {k.states()}")
            out.append(self.cluster.run(d, "ip -br addr; ip neigh; ipvsadm -L --daemon",
                                        check=False))  # fmt: skip
            out.append(f"--- {d}: ipvsadm -Lnc | head -20")
            out.append(self.cluster.run(d, "ipvsadm -Lnc | head -20", check=False))
            out.append(k.log_tail())
        # whom the client and the real servers take the VIP and the DIP to be
        others = [self.spec.clients[0].name, *(r.name for r in self.spec.real_servers)]
        shown = self.cluster.run_each({h: ["ip neigh"] for h in others}, check=False,
                                      changes_setup=False)  # fmt: skip
        out += [f"--- {h}: ip neigh\n{text.strip()}" for h, text in shown.items()]
        return "\n".join(out)
