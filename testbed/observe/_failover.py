"""One failover, observed from every side: what test_failover.py and test_heartbeat.py check.

A failover run captures the client segment and both directors' outside
interfaces, probes the VIP with a new connection every 50 ms, inflicts the
fault, waits for the backup's takeover and its gratuitous-ARP bursts, then
undoes the fault and watches the preferred director come back. The same
observation serves every HA backend (keepalived, heartbeat).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from scapy.layers.inet import TCP

from ..ha import INSTANCE, DirectorPair, GarpExpectation, TakeoverWindow
from ..net import Frame, Probe, Prober
from ..util import wait_until
from ._records import FailoverRecord, record

# how late a daemon's gratuitous ARPs may come after its own takeover report (IPaddr2
# runs send_arp from a shell script, which emulation stretches to many seconds)
GARP_LATE_S = 10.0


@dataclass(frozen=True)
class Advert:
    """One VRRP advertisement seen on the client segment."""

    time: float
    sender: str  # the director whose MAC sent it
    priority: int


@dataclass(kw_only=True)
class Failover:
    """Everything seen around one fault of the preferred director."""

    label: str  # backend and settings
    fault: str
    master: str  # the preferred director, which fails
    backup: str
    window: TakeoverWindow
    garp: GarpExpectation
    slack: float
    failback_bound: float
    keeps_vip: tuple[str, ...]  # faults after which the failed director still holds the VIP
    fault_at: float
    takeover_at: float  # the backup's first gratuitous ARP (or the daemon's report)
    reported_at: float  # the daemon's own report (keepalived notify, VIP seen on d2)
    # where the daemon runs scripts between deciding and taking over: its decision,
    # as its log records it (to decision_resolution s), and the scripts' allowance
    decided_at: float | None
    decision_resolution: float
    scripts_bound: float
    released_at: float | None  # the failed director's VIP seen gone, if it went
    from_release: bool  # the window counts from the release, not the fault
    backup_priority: int  # the new master's; adverts below it make it send GARPs again
    adverts: list[Advert]  # every VRRP advertisement from a second before the fault
    backup_transitions: list[tuple[float, str]]  # as the daemon reported them
    holders_after: list[str]
    client_neigh: str
    macs: dict[str, str]
    garp_times: list[float]
    first_via_backup: Probe | None
    last_via_master: float | None
    first_frame_via_backup: float | None
    recovered_at: float  # the fault undone: from here the master may take the VIP back
    failback_s: float
    holders_after_failback: list[str]
    probes: list[Probe] = field(repr=False)
    # the new master's daemon log from a second before the fault, to the second: it says
    # why it sent a burst the capture cannot explain (an advert the capture missed)
    backup_log: list[tuple[float, str]] = field(default_factory=list, repr=False)
    vip: str = ""

    @property
    def decides_first(self) -> bool:
        """The daemon runs scripts between its decision and the takeover."""
        return self.scripts_bound > 0

    @property
    def lower_prio_adverts(self) -> list[float]:
        """When the new master received the failed one's adverts below its priority."""
        return [
            a.time
            for a in self.adverts
            if a.sender == self.master
            and a.priority < self.backup_priority
            and a.time >= self.takeover_at
        ]

    def logged_announcements(self) -> list[float]:
        """When the new master's log says it sent a burst for the VIP ("Sending/queueing
        gratuitous ARPs / Unsolicited Neighbour Adverts ... for VIP"), to the second,
        from its takeover until a second before the delayed burst."""
        start, end = int(self.takeover_at), self.takeover_at + self.garp.delay - 1
        sent = f" for {self.vip}"
        return [t for t, m in self.backup_log
                if "Sending/queueing" in m and m.endswith(sent) and start <= t < end]  # fmt: skip

    @property
    def logged_lower_prio(self) -> list[float]:
        """When the new master logged receiving an advert below its priority (keepalived
        answers one with garp_lower_prio_repeat gratuitous ARPs), to the second."""
        since = int(self.takeover_at)
        return [t for t, m in self.backup_log if "with lower priority" in m and t >= since]

    @property
    def master_exits(self) -> list[float]:
        """When the backup left MASTER after taking over, before the master came back
        (its failback is a legitimate exit): as its notify script reported, or else as
        its log says (to the second)."""
        reported = _exits(self.backup_transitions, self.recovered_at)
        entering = f"({INSTANCE}) Entering "
        states = [(t, m.split()[2]) for t, m in self.backup_log if m.startswith(entering)]
        logged = _exits(states, self.recovered_at)
        return sorted([*reported, *(t for t in logged if all(abs(t - r) > 1 for r in reported))])

    def adverts_after_shutdown(self) -> list[Advert]:
        """The failed master's adverts with a priority after it announced priority 0
        (RFC 5798 6.4.3: a shut-down router sends priority 0, then is silent)."""
        zero = next(
            (a.time for a in self.adverts if a.sender == self.master and a.priority == 0), None
        )
        if zero is None:
            return []
        return [
            a for a in self.adverts if a.sender == self.master and a.priority > 0 and a.time > zero
        ]

    def vrrp_story(self) -> str:
        """Adverts and the backup's transitions on the fault's clock, for a failure message."""

        def rel(t: float) -> str:
            return f"{t - self.fault_at:+.3f}"

        adverts = ", ".join(f"{rel(a.time)} {a.sender} prio {a.priority}" for a in self.adverts)
        states = ", ".join(f"{rel(t)} {s}" for t, s in self.backup_transitions)
        # one line per burst ("Sending/queueing ..."), not one per frame
        lines = [(t, m) for t, m in self.backup_log if not _PER_FRAME.match(m)]
        log = "".join(f"\n  {rel(t)} {m}" for t, m in lines[-40:])
        return f"adverts: [{adverts}]\n{self.backup} transitions: [{states}]" + (
            f"\n{self.backup} daemon log (to the second):{log}" if log else ""
        )

    @property
    def takeover_s(self) -> float:
        return self.takeover_at - self.fault_at

    @property
    def window_measured_s(self) -> float | None:
        """The takeover (or the decision, where one comes first) as the window counts
        it: from the fault, or from the release."""
        at = self.decided_at if self.decides_first else self.takeover_at
        start = self.released_at if self.from_release else self.fault_at
        return None if at is None or start is None else at - start

    @property
    def scripts_s(self) -> float | None:
        """From the daemon's decision to the takeover: its scripts' run time."""
        return None if self.decided_at is None else self.takeover_at - self.decided_at

    @property
    def restored_s(self) -> float | None:
        p = self.first_via_backup
        return None if p is None else p.end - self.fault_at

    def timeline(self) -> FailoverRecord:
        """Times relative to the fault, for results.json and the report."""

        def rel(t: float) -> float:
            return round(t - self.fault_at, 4)

        def rel_or_none(t: float | None) -> float | None:
            return None if t is None else rel(t)

        shift = (rel_or_none(self.released_at) or 0.0) if self.from_release else 0.0
        return FailoverRecord(
            key=f"{self.label}-{self.fault}",
            backend=self.label,
            fault=self.fault,
            formula=self.window.formula,
            # the window on the fault's clock: shifted to the release where it counts from it
            window_s=(
                round(self.window.earliest + shift, 3),
                round(self.window.latest + shift, 3),
            ),
            takeover_s=round(self.takeover_s, 4),
            daemon_reported_s=rel(self.reported_at),
            decided_s=rel_or_none(self.decided_at),
            released_s=rel_or_none(self.released_at),
            lower_prio_adverts_s=[rel(t) for t in self.lower_prio_adverts],
            backup_transitions=[(rel(t), s) for t, s in self.backup_transitions],
            service_restored_s=None if self.restored_s is None else round(self.restored_s, 4),
            last_via_master_s=rel_or_none(self.last_via_master),
            first_via_backup_s=rel_or_none(self.first_frame_via_backup),
            garp_s=[rel(t) for t in self.garp_times],
            failed_probes=sum(1 for p in self.probes if not p.ok and p.start >= self.fault_at),
            failback_s=round(self.failback_s, 3),
            vip_holders_after=self.holders_after,
        )


_PER_FRAME = re.compile(r"^Sending (gratuitous ARP|unsolicited Neighbour Advert) on ")


def _exits(transitions: list[tuple[float, str]], until: float) -> list[float]:
    """Times a director left MASTER, before ``until``."""
    held, out = False, []
    for t, state in transitions:
        if t >= until:
            break
        if state == "MASTER":
            held = True
        elif held:
            held = False
            out.append(t)
    return out


_SYN = 0x002  # TCP flags: SYN alone


def _syn_times(frames: list[Frame], vip: str, net: type) -> list[tuple[float, int]]:
    out = []
    for f in frames:
        # the probes' other segments (SYN-ACK, ACK, RST) are told apart from the bytes:
        # decoding each costs milliseconds under emulation
        if f.direction != "in" or f.tcp_flags() not in (None, _SYN):
            continue
        pkt = f.packet
        if TCP in pkt and pkt[TCP].flags == "S" and pkt[net].dst == vip:
            out.append((f.time, int(pkt[TCP].sport)))
    return out


def _adverts(frames: list[Frame], senders: dict[str, str], since: float) -> list[Advert]:
    """VRRP advertisements from the directors (``senders``: MAC -> name) after ``since``."""
    from scapy.layers.vrrp import VRRP, VRRPv3

    out = []
    for f in frames:
        # only the directors' frames are decoded (the source MAC is read from the bytes)
        sender = senders.get(f.src_mac)
        if sender is None or f.time < since:
            continue
        pkt = f.packet
        layer = VRRPv3 if VRRPv3 in pkt else VRRP if VRRP in pkt else None
        if layer is not None:
            out.append(Advert(f.time, sender, int(pkt[layer].priority)))
    return out


def observe_failover(pair: DirectorPair, fault: str) -> Failover:
    """Fail the preferred director, observe the takeover, then bring it back."""
    c, (d1, d2) = pair.cluster, pair.names
    client = c.spec.clients[0].name
    vip, family = str(c.spec.service.vip), c.spec.service.family
    macs = {d: c.mac(f"{d}-eth0") for d in (d1, d2)}
    garp = pair.garp
    with (
        c.capture(f"{client}-eth0", f"{d1}-eth0", f"{d2}-eth0") as cap,
        Prober(c.pid(client), (vip, pair.probe_port)) as prober,
    ):
        time.sleep(1.0)  # service through the master first
        fault_at = pair.fail(fault)

        def garps() -> list[float]:
            # time and sender first, from the bytes: only the backup's frames are decoded
            return [
                f.time
                for f in cap.frames(f"{client}-eth0")
                if f.time >= fault_at and f.src_mac == macs[d2] and family.announces(f.packet, vip)
            ]

        reported_at = pair.wait_takeover(fault_at)
        last_garp = garp.delay + garp.repeat * garp.interval
        # wait for the promised gratuitous ARPs themselves (a daemon's scripts may send
        # them late under emulation), then as long again as the promise would take
        promised = garp.repeat * (2 if garp.delay > 0 else 1)
        late = reported_at + last_garp + GARP_LATE_S
        wait_until(lambda: len(garps()) >= promised, timeout=max(0.0, late - time.time()),
                   interval=0.1)  # fmt: skip
        time.sleep(max(2.0, (garps()[:1] or [reported_at])[0] + last_garp + 1.5 - time.time()))
    holders = pair.holders()
    neigh = c.run(client, f"ip neigh show {vip}", check=False).strip()
    garp_times = garps()
    # the first GARP is sent as the backup takes over; a notify script's own clock
    # lags by the time to fork and exec it, which emulation stretches
    takeover_at = min([*garp_times[:1], reported_at])
    senders = {mac: d for d, mac in macs.items()}
    adverts = _adverts(cap.frames(f"{client}-eth0"), senders, since=fault_at - 1)
    via_backup = _syn_times(cap.frames(f"{d2}-eth0"), vip, family.layer)
    via_master = [
        t for t, _ in _syn_times(cap.frames(f"{d1}-eth0"), vip, family.layer) if t >= fault_at - 1
    ]
    first = prober.first_success_after(fault_at, sports={s for _, s in via_backup})
    recover_at = pair.recover(fault)
    failback_at = pair.wait_failback(recover_at)
    result = Failover(
        label=pair.label,
        fault=fault,
        master=d1,
        backup=d2,
        window=pair.window(fault),
        garp=garp,
        slack=pair.slack,
        failback_bound=pair.failback_bound,
        keeps_vip=pair.keeps_vip,
        fault_at=fault_at,
        takeover_at=takeover_at,
        reported_at=reported_at,
        decided_at=pair.decided_at(fault_at),
        decision_resolution=pair.decision_resolution,
        scripts_bound=pair.scripts_bound,
        released_at=pair.released_at,
        from_release=fault in pair.counted_from_release,
        backup_priority=pair.backup_priority,
        adverts=adverts,
        backup_transitions=[(t, st) for t, st in pair.transitions(d2) if t >= fault_at - 1],
        holders_after=holders,
        client_neigh=neigh,
        macs=macs,
        garp_times=garp_times,
        first_via_backup=first,
        last_via_master=max((t for t in via_master if t < takeover_at + 5), default=None),
        first_frame_via_backup=min((t for t, _ in via_backup if t >= fault_at), default=None),
        recovered_at=recover_at,
        failback_s=failback_at - recover_at,
        holders_after_failback=pair.holders(),
        probes=list(prober.probes),
        backup_log=[(t, m) for t, m in pair.daemon_log(d2) if t >= int(fault_at) - 1],
        vip=vip,
    )
    record(result.timeline())
    return result
