"""The classic LVS HA stack: heartbeat (v1 resources) moving the VIP, ldirectord checking.

heartbeat moves VIP and DIP (IPaddr2 resources); ldirectord, its usual
companion, is a checker of testbed.checks.

heartbeat 3 keeps its configuration in /etc/ha.d, its state in
/var/lib/heartbeat and /run, and names nodes by ``uname -n``, so two nodes
cannot share one machine. Each director's heartbeat therefore runs in private
UTS and mount namespaces (on top of the director's network namespace): its own
host name, its own /etc/ha.d (the package's scripts plus our ha.cf, authkeys,
haresources), and private tmpfs state directories (ldirectord(8), heartbeat's
ha.cf documentation).
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import re
import shlex
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cluster import MARK_ENV, Cluster, crash, processes_in_mount_ns
from ..topology import ClusterSpec
from ..util import TestbedError, tail_file
from ._pair import DirectorPair
from ._vrrp import GarpExpectation, TakeoverWindow

MNTNS_FILE = "mntns"  # "<mount namespace inode> <owner pid>" of one node's heartbeat
# IPaddr2's defaults: send_arp -i 200 -r 5 (resource-agents IPaddr2 arp_interval/
# arp_count). heartbeat's send_arp sends each of the 5 rounds as an ARP request and,
# half an interval later, an ARP reply (seen on the wire): 10 frames, 0.1 s apart
GARP_REPEAT, GARP_INTERVAL = 10, 0.1
# the log lines where heartbeat 3.0.6 decides to take over its peer's resources:
# the peer fell silent for deadtime, or announced its shutdown
_DECISIONS = (
    re.compile(r"WARN: node (?P<peer>\S+): is dead$"),
    re.compile(r"info: Received shutdown notice from '(?P<peer>[^']+)'\.$"),
)
# heartbeat 3.0.6's FIFO reader can fail to parse a message one of its scripts
# wrote (seen under emulation, logged as this line); when the lost message is the
# start-up resource request, neither node ever takes the resources
_DROPPED_MESSAGE = "ERROR: msg2string: Message with zero fields"
_STAMP = re.compile(r"^(?P<stamp>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) \S+ heartbeat: ")


def takeover_decisions(log: str, *, peer: str, year: int) -> list[float]:
    """Times at which a node's heartbeat log decided to take over ``peer``'s resources.

    heartbeat stamps its log in local time to the whole second, without a year.
    """
    times = []
    for line in log.splitlines():
        stamp = _STAMP.match(line)
        if stamp and any((m := d.search(line)) and m["peer"] == peer for d in _DECISIONS):
            when = datetime.datetime.strptime(f"{year} {stamp['stamp']}", "%Y %b %d %H:%M:%S")
            times.append(when.timestamp())
    return times


@dataclass(frozen=True, kw_only=True)
class HeartbeatTiming:
    """ha.cf timing: heartbeats every ``keepalive`` s, a peer is dead after ``deadtime``."""

    keepalive: int = 1
    deadtime: int = 4
    warntime: int = 2
    initdead: int = 10  # heartbeat warns below 10 s
    auto_failback: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.keepalive < self.warntime < self.deadtime <= self.initdead:
            raise TestbedError("heartbeat timing needs keepalive < warntime < deadtime <= initdead")


def render_ha_cf(
    timing: HeartbeatTiming, *, interface: str, peer: str, logfile: str, nodes: list[str]
) -> str:
    return "\n".join(
        [
            f"logfile {logfile}",
            "use_logd no",
            f"keepalive {timing.keepalive}",
            f"warntime {timing.warntime}",
            f"deadtime {timing.deadtime}",
            f"initdead {timing.initdead}",
            "udpport 694",
            f"ucast {interface} {peer}",
            f"auto_failback {'on' if timing.auto_failback else 'off'}",
            "crm off",
            *(f"node {n}" for n in nodes),  # heartbeat names nodes by uname -n
            "",
        ]
    )


def render_haresources(spec: ClusterSpec) -> str:
    """Resources of the preferred director, identical on both nodes: VIP and DIP.

    IPaddr2 finds the interface from the netmask (d1-eth0 on one node,
    d2-eth0 on the other), so the line can be the same everywhere.
    """
    s = spec.service
    resources = [
        f"IPaddr2::{s.vip}/{spec.outside.prefixlen}",
        f"IPaddr2::{s.dip}/{spec.inside.prefixlen}",
    ]
    return f"{spec.active.name} {' '.join(resources)}\n"


_START = """set -e
# heartbeat clears its environment when it daemonizes: its private mount
# namespace is what identifies its processes later (and to `clean`)
echo "$(stat -L -c %i /proc/self/ns/mnt) {owner}" > {mntns}
hostname {name}
mount --bind {hadir} /etc/ha.d
mount -t tmpfs -o mode=0755 tmpfs /var/lib/heartbeat
mkdir -p /var/lib/heartbeat/cores/hacluster /var/lib/heartbeat/cores/root
chown -R hacluster:haclient /var/lib/heartbeat
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/heartbeat/ccm /run/heartbeat/crm /run/heartbeat/dopd /run/crm /run/lock \
    /run/resource-agents
chown -R hacluster:haclient /run/heartbeat /run/crm
exec /usr/libexec/heartbeat/heartbeat
"""


class HeartbeatNode:
    """heartbeat on one director, in its own UTS and mount namespaces."""

    def __init__(self, host: Any, workdir: Path) -> None:
        self.host = host
        self.name = str(host.name)
        self.dir = workdir / f"heartbeat-{self.name}"

    def configure(self, files: dict[str, str]) -> None:
        """Fresh /etc/ha.d: the package's scripts plus ``files`` (name -> text)."""
        hadir = self.dir / "ha.d"
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.copytree("/etc/ha.d", hadir, symlinks=True)
        for name, text in files.items():
            (hadir / name).write_text(text)
        (hadir / "authkeys").write_text("auth 1\n1 sha1 lvs-testbed-only\n")
        (hadir / "authkeys").chmod(0o600)

    @property
    def logfile(self) -> Path:
        return self.dir / "log"

    def start(self) -> None:
        script = _START.format(
            name=self.name,
            hadir=shlex.quote(str(self.dir / "ha.d")),
            mntns=shlex.quote(str(self.dir / MNTNS_FILE)),
            owner=os.environ.get(MARK_ENV, "0"),
        )
        proc = self.host.popen(["unshare", "--uts", "--mount", "sh", "-c", script])
        proc.wait(60)
        if proc.returncode != 0:
            raise TestbedError(f"heartbeat on {self.name} failed to start:\n{self.log_tail()}")

    def pids(self) -> list[int]:
        """Every process in this node's private mount namespace."""
        try:
            inode = int((self.dir / MNTNS_FILE).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return processes_in_mount_ns(inode)

    def _master(self) -> int | None:
        for pid in self.pids():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"heartbeat: master"):
                    return pid
        return None

    @property
    def running(self) -> bool:
        return self._master() is not None

    def terminate(self) -> None:
        """Begin a clean shutdown: resources (addresses) released, the peer told."""
        master = self._master()
        if master is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(master, signal.SIGTERM)

    def stop(self, *, timeout: float = 60) -> None:
        """Clean shutdown, waited for; what is still running after ``timeout`` is killed."""
        self.terminate()
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.kill()

    def kill(self) -> None:
        """A crash: every process of this node stopped, then SIGKILLed; resources stay."""
        crash(self.pids())

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 25) -> str:
        return tail_file(self.logfile, f"heartbeat log, {self.name}", lines)


class HeartbeatPair(DirectorPair):
    """d1 and d2 under heartbeat, which moves VIP and DIP; both have the IPVS table.

    The IPVS table is configured on both directors beforehand, as with
    keepalived's HaPair, so the failover measured is heartbeat's alone.
    """

    probe_port = 80
    backup_priority = 0  # heartbeat has no VRRP adverts
    # heartbeat (no ping nodes or ipfail configured) cannot tell a dead peer from
    # its own cut cable: the cut node keeps its resources too (split brain)
    keeps_vip = ("kill", "cut")
    # a stopping node runs its release scripts first, then hands over: no timeout
    # is involved, so the window counts from the release
    counted_from_release = ("stop",)
    # s past deadtime for the decision: heartbeat's timers under emulation
    slack = 5.0
    decision_resolution = 1.0  # its log stamps whole seconds
    # after deciding, heartbeat runs its resource scripts (harc, ResourceManager,
    # IPaddr2: shell scripts forking dozens of processes); under software
    # emulation that takes many seconds, which no formula covers
    scripts_bound = 60.0

    def __init__(
        self,
        cluster: Cluster,
        *,
        timing: HeartbeatTiming | None = None,
        mode: str = "dr",
    ) -> None:
        super().__init__(cluster, mode=mode)
        self.timing = timing or HeartbeatTiming()
        self.nodes = {n: HeartbeatNode(cluster.node(n), cluster.workdir) for n in self.names}

    def start(self) -> None:
        c = self.cluster
        c.configure(self.spec)
        for d in self.names:
            c.ipvs_of(d).apply(self.spec.service, self.spec.real_servers)
        c.release_service_addresses()
        c.diagnostics.append(self.describe)
        for d in self.names:
            self.nodes[d].configure(self._files(d))
        for attempt in (1, 2):
            for d in self.names:
                self.start_daemon(d)
            try:
                self.wait_ready(self.names[0], timeout=self.timing.initdead + 60)
                return
            except AssertionError:
                lost = [n for n, node in self.nodes.items() if _DROPPED_MESSAGE in node.log()]
                if attempt == 2 or not lost:
                    raise
                # a heartbeat bug in setting up, not the failover under test: once more
                print(
                    f"[heartbeat] {', '.join(lost)} lost a start-up message "
                    f"({_DROPPED_MESSAGE!r}); starting the pair again"
                )

    def stop(self) -> None:
        c = self.cluster
        # The pair's end is not under test: both daemons are killed at once, as the
        # "kill" fault kills one, and restore_all removes the VIP and DIP they held,
        # as recover() does after that fault. A clean shutdown made the holder run its
        # IPaddr2 release scripts, then its peer take the resources over and release
        # them in turn: over a minute under emulation, for nothing checked.
        self.kill_daemons()
        self.restore_all()
        for d in self.names:
            with contextlib.suppress(Exception):
                c.ipvs_of(d).flush()
        with contextlib.suppress(ValueError):
            c.diagnostics.remove(self.describe)
        c.claim_service_addresses()
        c.configure(c.base_spec)

    def kill_daemons(self, *, timeout: float = 30) -> None:
        """Every process of both nodes killed, again until none is left (a script may
        have forked after its node's processes were listed)."""
        deadline = time.monotonic() + timeout
        while (pids := [p for n in self.nodes.values() for p in n.pids()]) and (
            time.monotonic() < deadline
        ):
            crash(pids)
            time.sleep(0.1)

    def _files(self, director: str) -> dict[str, str]:
        spec = self.spec
        peer = next(d for d in spec.directors if d.name != director)
        node = self.nodes[director]
        return {
            "ha.cf": render_ha_cf(
                self.timing,
                # heartbeats share the clients' segment, as VRRP does: a cut
                # cable silences them
                interface=f"{director}-eth0",
                peer=str(peer.outside),
                logfile=str(node.logfile),
                nodes=list(self.names),
            ),
            "haresources": render_haresources(spec),
        }

    def wait_ready(self, director: str, *, timeout: float) -> float:
        """Until ``director`` alone holds the VIP."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.holders() == [director]:
                return time.time()
            time.sleep(0.1)
        raise AssertionError(
            f"{director} did not take the service within {timeout:g} s\n{self.describe()}"
        )

    # -- DirectorPair -------------------------------------------------------------------
    def start_daemon(self, director: str) -> None:
        node = self.nodes[director]
        node.stop()  # a node told to stop may still be shutting down
        node.start()

    def stop_daemon(self, director: str) -> None:
        # only begun: its shutdown (resources released, peer told) is what is measured
        self.nodes[director].terminate()

    def kill_daemon(self, director: str) -> None:
        self.nodes[director].kill()

    @property
    def label(self) -> str:
        t = self.timing
        return f"heartbeat-keepalive{t.keepalive}s-deadtime{t.deadtime}s"

    @property
    def garp(self) -> GarpExpectation:
        return GarpExpectation(repeat=GARP_REPEAT, delay=0, interval=GARP_INTERVAL)

    def window(self, fault: str) -> TakeoverWindow:
        t = self.timing
        if fault == "stop":  # the stopping node hands its resources over: no timeout
            return TakeoverWindow(
                earliest=0, latest=t.deadtime, formula="handover after release < deadtime"
            )
        return TakeoverWindow(
            earliest=t.deadtime - t.keepalive,
            latest=t.deadtime,
            formula=f"deadtime {t.deadtime} s, minus up to keepalive {t.keepalive} s",
        )

    @property
    def failback_bound(self) -> float:
        """The returning node waits out initdead, then the peer's release scripts run,
        then its own acquiring ones."""
        return self.timing.initdead + self.timing.deadtime + 2 * self.scripts_bound

    def decided_at(self, after: float) -> float | None:
        master, backup = self.names
        text = self.nodes[backup].log()
        year = datetime.datetime.fromtimestamp(after).year
        times = takeover_decisions(text, peer=master, year=year)
        return min((t for t in times if t >= math.floor(after)), default=None)

    def wait_takeover(self, after: float) -> float:
        """Time the backup's IPaddr2 added the VIP (noting when the other released it)."""
        first, second = self.names
        # a clean stop runs the release scripts, then the peer's: both take long
        deadline = time.monotonic() + self.timing.deadtime + self.slack + 2 * self.scripts_bound
        while time.monotonic() < deadline:
            now, holders = time.time(), self.holders()
            if self.released_at is None and first not in holders:
                self.released_at = now
            if second in holders:
                return now
            time.sleep(0.05)
        raise AssertionError(f"{self.names[1]} never took the VIP\n{self.describe()}")

    def wait_failback(self, after: float) -> float:
        at = self.wait_ready(self.names[0], timeout=self.failback_bound + 60)
        deadline = time.monotonic() + 30
        while self.names[1] in self.holders() and time.monotonic() < deadline:
            time.sleep(0.1)
        return at

    def describe(self) -> str:
        out = [f"--- heartbeat pair {self.timing}; VIP held by {self.holders()}"]
        for d, node in self.nodes.items():
            out.append(f"--- {d}: heartbeat processes {node.pids()}")
            out.append(self.cluster.run(d, "ip -br addr; ipvsadm -Ln", check=False))
            out.append(node.log_tail())
        return "\n".join(out)
