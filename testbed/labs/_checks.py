"""What a lab's checker can see: each check inspects the live cluster and returns a Verdict.

A check never reads what the student typed. It sends real traffic through
the VIP, captures frames, reads a director's IPVS table over netlink, or
reads a host's sysctls and files; its Verdict says what it saw in the
student's terms (which servers answered, who claimed the VIP), never which
command would fix it. A lab file names a check and gives its arguments::

    [[task]]
    name = "answers"
    goal = "c1 reaches the service and all three real servers answer"
    check = "answers"
    with = { client = "c1", servers = ["r1", "r2", "r3"] }
    hint = "..."
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..cluster import Cluster
from ..ipvs import ServiceState, read_connections
from ..load import STREAM_PORT
from ..net import Frame, StreamSet
from ..observe import fresh_client_port, kernel_weights, served_by, time_until, vip_claims
from ..registry import MODES, Registry
from ..util import TestbedError, wait_until
from ._daemons import age, daemons_in

REQUEST_TIMEOUT_S = 2  # per request: a broken path fails the check in seconds
# a failover check waits this long for a takeover, and for the failback: VRRP's
# master-down interval at advert_int 1 s is 3.6 s (RFC 5798), plus emulation
FAILOVER_BOUND_S = 10
# a long download's entry reaches the backup after its 3rd packet, and the sync
# daemon flushes at least every 2 s (ipvs-sysctl.rst sync_threshold; ip_vs_sync.c)
SYNC_WAIT_S = 3
STREAM_WAIT_S = 3  # after a takeover, for each download to flow again or be reset
# rounds of the ARP-announce check, for one in which every answering server asked for
# the router on behalf of an answer
ANNOUNCE_ROUNDS = 3


@dataclass(frozen=True)
class Verdict:
    ok: bool
    saw: str  # what the checker observed, in the student's terms


@dataclass(frozen=True)
class Check:
    name: str
    about: str
    observe: Callable[..., Verdict]  # (cluster, **args from the lab file)


CHECKS: Registry[Check] = Registry("lab check")


def _check(observe: Callable[..., Verdict]) -> Callable[..., Verdict]:
    CHECKS.register(Check(observe.__name__, (observe.__doc__ or "").strip(), observe))
    return observe


# -- what the checks share ------------------------------------------------------------------


def ask(cluster: Cluster, client: str, count: int, *, fresh_ports: bool = False) -> list[str]:
    """``count`` requests from ``client`` to the VIP, one connection each: the name of
    the real server that answered each, "" for no answer within the time-out.
    ``fresh_ports``: each from a client port no entry of the director's table has (an
    old entry would carry the connection to its old real server, unscheduled)."""
    s = cluster.spec.service
    url = f"http://{s.endpoint}/"
    curl = f"curl -s --max-time {REQUEST_TIMEOUT_S} -w '\\n'"
    if fresh_ports:
        ports = [fresh_client_port(cluster, client) for _ in range(count)]
        command = "; ".join(f"{curl} --local-port {p} {url}" for p in ports)
    else:
        command = f"{curl} {' '.join([url] * count)}"
    out = cluster.run(client, command, check=False, changes_setup=False)
    names = [line.strip() for line in out.splitlines()][:count]
    return names + [""] * (count - len(names))


def _answered(names: list[str], count: int) -> str:
    got = [n for n in names if n]
    who = Counter(got)
    by = ", ".join(f"{n} {k}x" for n, k in sorted(who.items())) or "nobody"
    return f"{len(got)} of {count} requests answered (by {by})"


def _service(cluster: Cluster, director: str) -> ServiceState | None:
    s = cluster.spec.service
    for state in cluster.ipvs_of(director).services():
        if (
            state.addr == str(s.vip)
            and state.port == s.port
            and state.protocol == s.transport.number
        ):
            return state
    return None


def _names(cluster: Cluster) -> dict[str, str]:
    """Real server address -> name."""
    return {str(r.ip): r.name for r in cluster.spec.real_servers}


def _ratio_differs(got: dict[str, int], want: dict[str, int]) -> bool:
    """Weights are proportions: 6, 4, 2 schedule as 3, 2, 1 do."""
    if set(got) != set(want) or not any(want.values()):
        return set(got) != set(want) or any(got.values())
    scale = Fraction(sum(got.values()), sum(want.values()))
    return any(Fraction(got[n]) != want[n] * scale for n in want)


# -- the vocabulary -------------------------------------------------------------------------


@_check
def answers(
    cluster: Cluster,
    client: str = "c1",
    servers: list[str] | None = None,
    requests: int | None = None,
    counts: dict[str, int] | None = None,
) -> Verdict:
    """Requests from a client to the VIP, one connection each (default: as many as
    ``servers``, or the sum of ``counts``): all answered, by exactly ``servers``
    (default: every real server), and if ``counts`` is given, that many times each."""
    want = set(servers) if servers is not None else {r.name for r in cluster.spec.real_servers}
    if requests is None:
        requests = sum(counts.values()) if counts else len(want)
    names = ask(cluster, client, requests)
    got = Counter(n for n in names if n)
    ok = sum(got.values()) == requests and set(got) == want
    if counts is not None:
        ok = ok and dict(got) == counts
    return Verdict(
        ok, f"{client} -> {cluster.spec.service.endpoint}: " + _answered(names, requests)
    )


@_check
def table(
    cluster: Cluster,
    director: str = "d1",
    scheduler: str | None = None,
    mode: str | None = None,
    servers: list[str] | None = None,
    weights: dict[str, int] | None = None,
    persistent: bool | None = None,
) -> Verdict:
    """A director's IPVS table has the lab's virtual service (VIP, port, protocol) with
    the scheduler, forwarding method, real servers, weights (as proportions) and
    persistence asked for."""
    s = cluster.spec.service
    state = _service(cluster, director)
    if state is None:
        return Verdict(False, f"{director} has no virtual service {s.transport.title} {s.endpoint}")
    names = _names(cluster)
    dests = {names.get(d.addr, d.addr): d for d in state.dests}
    problems = []
    if scheduler is not None and state.scheduler != scheduler:
        problems.append(f"its scheduler is {state.scheduler}")
    if servers is not None and set(dests) != set(servers):
        problems.append(f"its real servers are {', '.join(sorted(dests)) or 'none'}")
    if mode is not None:
        wrong = sorted(n for n, d in dests.items() if d.method != MODES[mode].name)
        if wrong:
            methods = {dests[n].method for n in wrong}
            problems.append(f"{', '.join(wrong)} forwarded by {', '.join(sorted(methods))}")
    if weights is not None:
        got = {n: d.weight for n, d in dests.items()}
        if _ratio_differs(got, weights):
            problems.append("weights " + ", ".join(f"{n} {w}" for n, w in sorted(got.items())))
    if persistent is not None and state.persistent != persistent:
        problems.append("it is persistent" if state.persistent else "it is not persistent")
    seen = f"{director}: {s.transport.title} {s.endpoint} {state.scheduler}, " + (
        ", ".join(f"{n} ({d.method}, weight {d.weight})" for n, d in sorted(dests.items()))
        or "no real servers"
    )
    return Verdict(not problems, seen + ("" if not problems else "; " + "; ".join(problems)))


@_check
def replies(cluster: Cluster, via: str, client: str = "c1") -> Verdict:
    """One request is answered, and its replies pass the active director (``via =
    "director"``, NAT) or go to the client without it (``via = "direct"``, DR, TUN)."""
    if via not in ("director", "direct"):
        raise TestbedError(f"replies: via must be director or direct, not {via!r}")
    s, d = cluster.spec.service, cluster.spec.active.name
    point = f"{d}-eth1"
    client_ip = next(str(c.ip) for c in cluster.spec.clients if c.name == client)
    sources = {str(s.vip), *(str(r.ip) for r in cluster.spec.real_servers)}
    with cluster.capture(point) as cap:
        names = ask(cluster, client, 1)
    net = s.family.layer
    back = [
        f for f in cap.frames(point)
        if f.direction != "out" and net in f.packet and f.packet[net].src in sources
        and f.packet[net].dst == client_ip
    ]  # fmt: skip
    answered = bool(names and names[0])
    ok = answered and (bool(back) if via == "director" else not back)
    return Verdict(
        ok,
        f"{_answered(names, 1)}; {len(back)} reply frame(s) from the real server side "
        f"reached {d}'s inside interface",
    )


def claimants(cluster: Cluster) -> list[str]:
    """Hosts that answer "who has the VIP?" asked by the router on the inside segment."""
    return sorted({f.point.split("-", 1)[0] for f in vip_claims(cluster)})


@_check
def vip_claimed_by(cluster: Cluster, hosts: list[str]) -> Verdict:
    """Asked on the real servers' segment who has the VIP, exactly ``hosts`` answer."""
    who = claimants(cluster)
    vip = cluster.spec.service.vip
    saw = f"asked 'who has {vip}?' inside: answered by {', '.join(who) or 'nobody'}"
    return Verdict(who == sorted(hosts), saw)


def _asked_for(frames: list[Frame], router: str, router_mac: str) -> tuple[Any, Any] | None:
    """A server's first ARP request for the router among the frames it sent, and the
    packet that made it ask: the first IP packet it then sent to the router (a
    neighbour's queue is first in, first out). None if it did not ask."""
    from scapy.layers.inet import IP
    from scapy.layers.l2 import ARP

    for i, f in enumerate(frames):
        if ARP in f.packet and f.packet[ARP].op == 1 and f.packet[ARP].pdst == router:
            queued = next((g.packet[IP] for g in frames[i + 1 :]
                           if IP in g.packet and g.packet.dst == router_mac), None)  # fmt: skip
            return f.packet[ARP], queued
    return None


@_check
def vip_announced_by(cluster: Cluster, hosts: list[str], client: str = "c1") -> Verdict:
    """While the real servers answer (their own earlier connections ended and their
    neighbour caches emptied first, so each must ask for the router's address on behalf
    of an answer), exactly ``hosts`` send that ARP request with the VIP as the sender
    address (arp_announce: ip-sysctl.rst). A server that did not ask on behalf of an
    answer (it answered without asking, or its own traffic asked first) was not
    observed: the round is repeated."""
    spec = cluster.spec
    vip, gw = str(spec.service.vip), str(spec.router.inside)
    gw_mac = cluster.mac(f"{spec.router.name}-eth1")
    servers = [r.name for r in spec.real_servers]
    # the connections a server keeps retransmitting on from earlier traffic (ss -K:
    # sock_diag destroy) would ask for the router from the server's own address
    quiet = "ss -K -t state connected >/dev/null 2>&1; ip neigh flush all"
    judged: dict[str, str] = {}  # server -> sender of its ARP request for an answer
    other: dict[str, str] = {}  # server -> the packet of its own that asked instead
    for _ in range(ANNOUNCE_ROUNDS):
        cluster.run_each({r: [quiet] for r in servers}, changes_setup=False)
        with cluster.capture(*(f"{r}-eth0" for r in servers)) as cap:
            names = ask(cluster, client, len(servers))
        for r in (r for r in servers if r not in judged):
            sent = [f for f in cap.frames(f"{r}-eth0") if f.direction == "out"]
            if (asked := _asked_for(sent, gw, gw_mac)) is None:
                continue
            arp, queued = asked
            if queued is not None and queued.src == vip:
                judged[r] = str(arp.psrc)
            else:
                other[r] = queued.summary() if queued is not None else "nothing it sent"
        unobserved = sorted({n for n in names if n in servers and n not in judged})
        if not any(names) or not unobserved:
            break
    if not any(names):
        return Verdict(False, f"no request was answered, so no real server had to ask ({vip})")
    announcers = sorted(r for r, sender in judged.items() if sender == vip)
    asked = "; ".join(f"{r} from {'the VIP' if a == vip else a}" for r, a in sorted(judged.items()))
    saw = (
        f"{_answered(names, len(servers))}; ARP requests with the VIP as sender: "
        f"{', '.join(announcers) or 'none'} (asking for {gw} while answering: "
        f"{asked or 'nobody'})"
    )
    if unobserved:  # nothing to judge these by
        why = "; ".join(f"{r}: {other.get(r, 'answered without asking')}" for r in unobserved)
        return Verdict(False, f"{saw}; not seen asking for an answer ({why})")
    return Verdict(announcers == sorted(hosts), saw)


@_check
def sticks(cluster: Cluster, client: str = "c1", requests: int = 4) -> Verdict:
    """Every request of one client, each a new connection, reaches the same real server."""
    names = ask(cluster, client, requests, fresh_ports=True)
    ok = all(names) and len(set(names)) == 1 and len(names) == requests
    return Verdict(ok, f"{client}: {_answered(names, requests)}")


@_check
def prediction(cluster: Cluster, file: str, client: str = "c1") -> Verdict:
    """The real servers named in ``file`` (names or addresses, one per line or space)
    are, in order, those the director picks for as many new connections, starting
    from a fresh scheduler (the checker re-selects the service's scheduler, which
    resets its state)."""
    path = Path(file)
    if not path.is_file():
        return Verdict(False, f"there is no prediction in {file} yet")
    names = _names(cluster)  # Mininet's CLI turns a host name it is given into an address
    predicted = [names.get(word, word) for word in path.read_text().split()]
    if not predicted:
        return Verdict(False, f"{file} is empty")
    d = cluster.spec.active.name
    state = _service(cluster, d)
    if state is None:
        return Verdict(False, f"{d} has no virtual service to predict")
    ipvs, service = cluster.ipvs_of(d), cluster.spec.service
    other = "rr" if state.scheduler != "rr" else "wrr"
    ipvs.edit_service(dataclasses.replace(service, scheduler=other))
    ipvs.edit_service(dataclasses.replace(service, scheduler=state.scheduler))
    chosen = ask(cluster, client, len(predicted))
    return Verdict(chosen == predicted, f"predicted {' '.join(predicted)}; the director "
                   f"chose {' '.join(n or '-' for n in chosen)}")  # fmt: skip


@_check
def sysctl(cluster: Cluster, host: str, key: str, value: str) -> Verdict:
    """A sysctl of one host has a value."""
    path = "/proc/sys/" + key.replace(".", "/")  # sysctl(8)'s key: no dots in our names
    got = " ".join(cluster.sysctls(host, path).get(path, "").split())
    return Verdict(got == str(value), f"{host}: {key} = {got or '(absent)'}")


# -- two directors -------------------------------------------------------------------------


def holders(cluster: Cluster) -> list[str]:
    """Directors that have the VIP on an interface now (their namespaces' own view)."""
    s = cluster.spec.service
    return [d.name for d in cluster.spec.directors
            if str(s.vip) in s.family.local_addresses(cluster.pid(d.name))]  # fmt: skip


def _on(names: list[str]) -> str:
    return " and ".join(names) if names else "no director"


@_check
def vip_held_by(cluster: Cluster, hosts: list[str], settle: float = 5) -> Verdict:
    """Exactly ``hosts`` (directors) have the VIP on an interface, judged once every
    keepalived in the directors has run ``settle`` seconds: a backup that does not
    hear the master takes over only after its master-down interval (3.6 s at
    advert_int 1 s, RFC 5798), so a split brain shows only then."""
    pids = [cluster.pid(d.name) for d in cluster.spec.directors]
    ages = [settle]
    for pid in daemons_in(pids):
        with contextlib.suppress(OSError):  # one that has just ended
            ages.append(age(pid))
    time.sleep(max(0.0, settle - min(ages)))
    now = holders(cluster)
    return Verdict(now == sorted(hosts), f"the VIP is on {_on(now)}")


class _Cut:
    """A director's outside cable pulled (its switch port down) for the time of a block."""

    def __init__(self, cluster: Cluster, director: str) -> None:
        self.port = cluster.switch_port(f"{director}-eth0")

    def __enter__(self) -> float:
        subprocess.run(["ip", "link", "set", self.port, "down"], check=True)
        return time.time()

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "link", "set", self.port, "up"], check=False)


def _taken_over(cluster: Cluster, director: str, cut_at: float) -> tuple[str, float] | None:
    """(new holder, seconds after the cut) once another director has the VIP."""
    others = [d.name for d in cluster.spec.directors if d.name != director]
    if not wait_until(lambda: set(others) & set(holders(cluster)), timeout=FAILOVER_BOUND_S,
                      interval=0.1):  # fmt: skip
        return None
    return next(d for d in holders(cluster) if d in others), time.time() - cut_at


def _failback(cluster: Cluster, director: str) -> str:
    """After the cable is back: how long until ``director`` alone has the VIP again."""
    back_at = time.time()
    alone = wait_until(lambda: holders(cluster) == [director], timeout=FAILOVER_BOUND_S,
                       interval=0.1)  # fmt: skip
    if not alone:
        return f"cable back: after {FAILOVER_BOUND_S} s the VIP is on {_on(holders(cluster))}"
    return f"cable back: the VIP on {director} alone after {time.time() - back_at:.1f} s"


@_check
def takeover(cluster: Cluster, director: str = "d1", client: str = "c1") -> Verdict:
    """The checker pulls ``director``'s outside cable: another director takes the VIP
    and every real server answers through it; with the cable back, ``director``
    alone has the VIP again (it preempts, as the higher priority)."""
    start = holders(cluster)
    if start != [director]:
        return Verdict(False, f"before any fault the VIP is on {_on(start)}, not on {director} "
                              "alone: there is nothing to fail over")  # fmt: skip
    want = len(cluster.spec.real_servers)
    with _Cut(cluster, director) as cut_at:
        taken = _taken_over(cluster, director, cut_at)
        names = ask(cluster, client, want) if taken else []
    back = _failback(cluster, director)
    if taken is None:
        return Verdict(False, f"{director}'s cable cut: no other director took the VIP within "
                              f"{FAILOVER_BOUND_S} s; {back}")  # fmt: skip
    new, after = taken
    ok = all(names) and len(set(names)) == want and back.endswith(" s") and "alone" in back
    return Verdict(ok, f"{director}'s cable cut: {new} took the VIP after {after:.1f} s, "
                       f"{_answered(names, want)}; {back}")  # fmt: skip


@_check
def kept(cluster: Cluster, director: str = "d1", downloads: int = 4) -> Verdict:
    """Long downloads from the first client through ``director`` (port 9000 of the
    VIP) keep flowing after the checker pulls its cable and another director takes
    the VIP: the new holder knew the connections (connection sync)."""
    start = holders(cluster)
    if start != [director]:
        return Verdict(False, f"the VIP is on {_on(start)}, not on {director} alone")
    client = cluster.spec.clients[0]
    others = [d.name for d in cluster.spec.directors if d.name != director]
    with StreamSet(cluster.pid(client.name)) as conns:
        opened = conns.open("stream", downloads, (str(cluster.spec.service.vip), STREAM_PORT))
        mine = {(str(client.ip), t.sport) for t in opened}

        def known(d: str) -> int:
            return len(mine & {c.client for c in read_connections(cluster.pid(d))})

        # given time to reach a backup, if anything sends them
        wait_until(lambda: all(known(d) == downloads for d in others), timeout=SYNC_WAIT_S,
                   interval=0.2)  # fmt: skip
        with _Cut(cluster, director) as cut_at:
            taken = _taken_over(cluster, director, cut_at)
            if taken is not None:
                new, after = taken
                learnt, took_at = known(new), cut_at + after

                def settled() -> bool:  # every download flowing again, or broken
                    return all(not t.alive or t.first_arrival(took_at) for t in opened)

                wait_until(settled, timeout=STREAM_WAIT_S, interval=0.2)
                time.sleep(1)  # a reset may follow a last segment in flight
                flowing = sum(1 for t in opened if t.alive and t.first_arrival(took_at))
    if taken is None:
        return Verdict(False, f"{director}'s cable cut: no other director took the VIP within "
                              f"{FAILOVER_BOUND_S} s")  # fmt: skip
    return Verdict(
        flowing == downloads,
        f"{downloads} long downloads through {director}; its cable cut: {new} took the VIP "
        f"after {after:.1f} s, knowing {learnt} of them, and {flowing} of {downloads} kept "
        "flowing",
    )


# -- health checks --------------------------------------------------------------------------


@_check
def health(cluster: Cluster, server: str, within: float = 20) -> Verdict:
    """The checker stops ``server``'s web server: within ``within`` s it leaves the
    active director's table (removed, or weight 0) and requests are answered by the
    others; started again, it returns within ``within`` s."""
    ip = next((str(r.ip) for r in cluster.spec.real_servers if r.name == server), None)
    if ip is None:
        raise TestbedError(f"health: {server} is not a real server")
    d = cluster.spec.active.name
    if not kernel_weights(cluster).get(ip):
        return Verdict(False, f"{server} is not in {d}'s table (with a weight) to begin with")
    cluster.stop_real_server(server)
    try:
        left = _seconds_until(cluster, lambda w: not w.get(ip), within)
        got = served_by(cluster) if left is not None else None
    finally:
        cluster.start_real_server(server)
    back = _seconds_until(cluster, lambda w: bool(w.get(ip)), within)
    saw = f"{server}'s web server stopped: " + (
        f"{server} still in {d}'s table after {within:g} s"
        if left is None
        else f"{server} left {d}'s table after {left:.1f} s; "
        + _answered(list(got.elements()), sum(got.values()))  # type: ignore[union-attr]
    )
    saw += "; started again: " + (f"back after {back:.1f} s" if back is not None
                                  else f"not back within {within:g} s")  # fmt: skip
    ok = got is not None and "" not in got and server not in got and back is not None
    return Verdict(ok, saw)


def _seconds_until(
    cluster: Cluster, predicate: Callable[[dict[str, int]], object], bound: float
) -> float | None:
    try:
        return time_until(cluster, predicate, bound)
    except AssertionError:
        return None


def observe(cluster: Cluster, check: str, args: dict[str, Any]) -> Verdict:
    """Run one check; a broken lab file or a cluster fault is a failed verdict, not a crash."""
    try:
        return CHECKS[check].observe(cluster, **args)
    except (TestbedError, OSError, AssertionError) as exc:
        return Verdict(False, f"the checker could not look: {exc}")
