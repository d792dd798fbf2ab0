"""The promises every HA backend is held to after a failover (each test module cites its source).

test_failover.py (keepalived) and test_heartbeat.py (heartbeat) observe the
same kind of failover (testbed.observe.observe_failover) and assert these.
"""

from __future__ import annotations

from testbed.observe import Failover


def vip_moved(fo: Failover) -> None:
    assert fo.backup in fo.holders_after, fo.timeline()
    if fo.fault not in fo.keeps_vip:
        assert fo.holders_after == [fo.backup], fo.timeline()


def takeover_in_window(fo: Failover) -> None:
    w, measured = fo.window, fo.window_measured_s
    since = "the release" if fo.from_release else "the fault"
    what = "decision to take over (logged)" if fo.decides_first else "takeover"
    assert fo.released_at is not None or not fo.from_release, (
        f"{fo.fault}: {fo.master} never released the VIP\n{fo.timeline()}"
    )
    assert measured is not None, f"{fo.backup} never logged a takeover decision\n{fo.timeline()}"
    # a logged decision is stamped to the whole second, so up to that much early
    early = 0.1 + fo.decision_resolution
    assert w.contains(measured, slack=fo.slack, early=early), (
        f"{what} {measured:.3f} s after {since}; the rule allows "
        f"[{w.earliest:.3f}, {w.latest:.3f}] s ({w.formula}), late slack {fo.slack} s"
    )
    if fo.decides_first:
        scripts = fo.scripts_s
        assert scripts is not None and -fo.decision_resolution <= scripts <= fo.scripts_bound, (
            f"the takeover came {scripts} s after the logged decision; its scripts may take "
            f"up to {fo.scripts_bound} s\n{fo.timeline()}"
        )


def service_restored(fo: Failover) -> None:
    assert fo.restored_s is not None, "no probe succeeded through the backup"
    # clients reach the backup once its gratuitous ARP has told them its MAC
    announced_s = max([fo.takeover_s, *(t - fo.fault_at for t in fo.garp_times[:1])])
    assert fo.restored_s <= announced_s + fo.slack + 0.5, fo.timeline()


def garp_problems(fo: Failover, times: list[float] | None = None) -> list[str]:
    """How the new master's gratuitous ARPs (``times``, default all) differ from the
    promise, allowing for the bursts its own events explain."""
    return fo.garp.check(
        fo.garp_times if times is None else times,
        slack=0.6,
        lower_prio=fo.lower_prio_adverts,
        logged_lower_prio=fo.logged_lower_prio,
        master_exits=fo.master_exits,
    )


def takeover_burst_sent_twice(fo: Failover) -> bool:
    """keepalived's known deviation and only it: a second whole burst within a second of
    the takeover burst, which its own log records sending; otherwise as promised."""
    groups = fo.garp.bursts_of(fo.garp_times)
    if len(groups) < 2 or len(fo.logged_announcements()) < 2:
        return False
    again = groups[1]
    if again[0] - groups[0][0] > 1.0 or len(again) != fo.garp.repeat:
        return False
    return not garp_problems(fo, [t for t in fo.garp_times if t not in again])


def garp_as_promised(fo: Failover) -> None:
    problems = garp_problems(fo)
    rel = [round(t - fo.takeover_at, 3) for t in fo.garp_times]
    assert not problems, f"{problems}; GARPs at {rel} s after takeover\n{fo.vrrp_story()}"


def backup_stays_master(fo: Failover) -> None:
    assert not fo.master_exits, (
        f"{fo.backup} left MASTER after taking over, before {fo.master} came back\n"
        f"{fo.vrrp_story()}"
    )


def client_follows(fo: Failover) -> None:
    assert fo.macs[fo.backup] in fo.client_neigh, (
        f"client: {fo.client_neigh!r}; {fo.master} {fo.macs[fo.master]}, "
        f"{fo.backup} {fo.macs[fo.backup]}"
    )


def failback(fo: Failover) -> None:
    bound = fo.failback_bound + fo.slack + 10  # + daemon start under emulation
    assert fo.failback_s <= bound, f"failback took {fo.failback_s:.2f} s"
    assert fo.holders_after_failback == [fo.master], fo.holders_after_failback
