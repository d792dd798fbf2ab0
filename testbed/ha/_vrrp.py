"""VRRP timing rules and failover arithmetic (pure; no root, no network).

Sources: RFC 3768 section 6.1 (VRRPv2: Skew_Time = (256 - Priority) / 256 s),
RFC 5798 section 6.1 (VRRPv3: Skew_Time = ((256 - Priority) x
Master_Adver_Interval) / 256), both: Master_Down_Interval = 3 x
Advertisement_Interval + Skew_Time; a master that shuts down sends an
advertisement with priority 0 and a backup receiving it waits only Skew_Time
(RFC 5798 6.4.3 / 6.4.2). keepalived.conf(5): garp_master_repeat (5)
gratuitous ARPs at takeover, garp_master_delay (5 s) later the same again.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

# A failure detected by missing advertisements (crash, cut link) ...
SILENT_FAULTS = ("kill", "cut")
# ... or announced with a priority-0 advertisement (clean stop)
ANNOUNCED_FAULTS = ("stop",)
FAULTS = ANNOUNCED_FAULTS + SILENT_FAULTS


def skew_time(*, priority: int, advert_int: float, version: int) -> float:
    """Seconds a backup of this priority adds to the master-down interval."""
    if version == 3:
        return (256 - priority) * advert_int / 256
    return (256 - priority) / 256


def master_down_interval(*, priority: int, advert_int: float, version: int) -> float:
    """Seconds without advertisements before a backup of this priority takes over."""
    return 3 * advert_int + skew_time(priority=priority, advert_int=advert_int, version=version)


@dataclass(frozen=True, kw_only=True)
class TakeoverWindow:
    """When, after a fault, the backup may become master, by the VRRP rules."""

    earliest: float
    latest: float
    formula: str

    def contains(self, seconds: float, *, slack: float, early: float = 0.1) -> bool:
        """Inside [earliest - early, latest + slack]: timers never fire early, so only
        clock and capture jitter (``early``) is allowed before the window."""
        return self.earliest - early <= seconds <= self.latest + slack


def takeover_window(
    fault: str, *, priority: int, advert_int: float, version: int
) -> TakeoverWindow:
    """The interval from fault to backup-becomes-master that the RFC allows.

    A silent fault happens somewhere between two advertisements, so the
    backup's master-down timer (started at the last one) has between
    Master_Down_Interval - Advertisement_Interval and Master_Down_Interval
    left to run.
    """
    skew = skew_time(priority=priority, advert_int=advert_int, version=version)
    if fault in ANNOUNCED_FAULTS:
        return TakeoverWindow(earliest=skew, latest=skew, formula=f"skew = {skew:.3f} s")
    if fault not in SILENT_FAULTS:
        raise ValueError(f"unknown fault {fault!r} (choose from {', '.join(FAULTS)})")
    down = 3 * advert_int + skew
    return TakeoverWindow(
        earliest=down - advert_int,
        latest=down,
        formula=f"3 x {advert_int:g} + {skew:.3f} = {down:.3f} s, minus up to {advert_int:g} "
        "(the fault falls between two adverts)",
    )


def bursts(times: Sequence[float], *, gap: float) -> list[list[float]]:
    """Split sorted event times into bursts separated by more than ``gap`` seconds."""
    out: list[list[float]] = []
    for t in sorted(times):
        if out and t - out[-1][-1] <= gap:
            out[-1].append(t)
        else:
            out.append([t])
    return out


@dataclass(frozen=True, kw_only=True)
class GarpExpectation:
    """What the HA daemon promises for gratuitous ARP after a takeover.

    keepalived.conf(5): garp_master_repeat GARPs at the transition to MASTER,
    vrrp_garp_interval apart, the same again garp_master_delay later; and a
    master that receives a lower-priority advertisement sends
    vrrp_garp_lower_prio_repeat (default: garp_master_repeat) more at once.
    """

    repeat: int = 5  # garp_master_repeat
    delay: float = 5.0  # garp_master_delay (0: no second burst)
    interval: float = 0.0  # vrrp_garp_interval between messages in a burst

    def _pacing(self, burst: Sequence[float]) -> list[str]:
        """The sender sleeps ``interval`` between frames. A capture's clock adds
        per-frame delivery jitter, which cancels out in the mean spacing; a single
        gap under half the interval is two frames sent back to back."""
        if len(burst) < 2 or self.interval <= 0:
            return []
        mean = (burst[-1] - burst[0]) / (len(burst) - 1)
        if mean < self.interval * 0.95:
            return [f"mean spacing {mean:.4f} s < interval {self.interval:g} s"]
        least = min(b - a for a, b in itertools.pairwise(burst))
        if least < self.interval / 2:
            return [
                f"spacing {least:.4f} s: two frames back to back (interval {self.interval:g} s)"
            ]
        return []

    def bursts_of(self, times: Sequence[float]) -> list[list[float]]:
        # a burst is sent in one loop; emulation can stall that loop ~0.2 s
        return bursts(times, gap=self.interval * 1.5 + 0.25)

    def check(
        self,
        times: Sequence[float],
        *,
        slack: float,
        lower_prio: Sequence[float] = (),
        logged_lower_prio: Sequence[float] = (),
        master_exits: Sequence[float] = (),
    ) -> list[str]:
        """Problems with observed GARP times (empty: as promised).

        ``lower_prio``: when the new master received lower-priority adverts;
        ``logged_lower_prio``: the same as its log records them, to the second.
        ``master_exits``: when it left MASTER again; its next transition to MASTER
        (a master-down interval later) is a takeover of its own, with its own burst.
        """
        exits = sorted(master_exits)
        groups = self.bursts_of(times)
        if not groups:
            return ["no gratuitous ARP"]
        problems = []
        first = groups[0][0]
        expected = {"takeover": first}
        if self.delay > 0:
            expected["delayed"] = first + self.delay
        for g in groups:
            start = g[0]
            kind = next((k for k, t in expected.items() if abs(start - t) <= slack), None)
            if kind is None and (
                any(0 <= start - t <= slack for t in lower_prio)
                or any(0 <= start - t <= 1 + slack for t in logged_lower_prio)
            ):
                kind = "lower-priority advert"
            if kind is None and exits and start > exits[0]:
                exits.pop(0)
                kind = "renewed takeover"
            if kind is None:
                problems.append(f"unexpected burst at +{start - first:.2f} s ({len(g)} frames)")
                continue
            expected.pop(kind, None)
            if len(g) != self.repeat:
                problems.append(f"{kind} burst: {len(g)} frames, expected {self.repeat}")
            problems += [f"{kind} burst: {p}" for p in self._pacing(g)]
        problems += [
            f"no {kind} burst (expected at +{t - first:.2f} s)" for kind, t in expected.items()
        ]
        return problems
