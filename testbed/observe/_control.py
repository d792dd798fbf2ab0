"""The control plane as a contract: what is set over netlink is what the kernel reports,
edits happen in place, ``ipvsadm -S`` / ``-R`` round-trips, and the refusals.

The table is a catalogue of services built from the registries (every protocol in
every mode, every scheduler with all its flags, persistence with a client block,
port 0, firewall marks, the SIP engine, one-packet, every tunnel option to real
servers of both families), in every family the topology has::

    table = control_table(cluster.base_spec, schedulers=available_schedulers())
    reported = load_table(cluster, table)    # what the kernel reports, settings only
    assert reported == expected_table(table)

Sources: ip_vs_ctl.c (ip_vs_genl_parse_service, ip_vs_genl_fill_service,
ip_vs_genl_fill_dest, ip_vs_edit_service, ip_vs_edit_dest), ipvsadm(8).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import shlex
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from ..cluster import Cluster
from ..ipvs import (
    SYSCTL_DIR,
    SYSCTLS,
    TIMEOUTS_COMMAND,
    ServiceState,
    Timeouts,
    expected_state,
    ipvsadm_commands,
    parse_timeouts,
    read_connections,
    service_key,
    settings,
)
from ..kernel import missing_module
from ..registry import FAMILIES, MODES, PERSISTENCE_ENGINES, PROTOCOLS, SCHEDULERS, tunnel_options
from ..topology import ClusterSpec, RealServer, Service
from ._records import record, record_kind

T = TypeVar("T")
Table = list[tuple[Service, tuple[RealServer, ...]]]
State = dict[tuple[int, int, int, str, int], ServiceState]

_FIRST_PORT = 9000  # the catalogue's services: ports nothing else of the suite uses
_FWMARK = 0x100  # the catalogue's firewall marks: one per family from here


def available_schedulers() -> list[str]:
    """The schedulers whose module this kernel has (twos is newer than 6.1)."""
    return [s for s in SCHEDULERS if not missing_module(SCHEDULERS[s].module, needed_by=s)]


def available_engines() -> list[str]:
    return [
        e
        for e in PERSISTENCE_ENGINES
        if not missing_module(PERSISTENCE_ENGINES[e].module, needed_by=e)
    ]


def _weighted(real_servers: Iterable[RealServer]) -> tuple[RealServer, ...]:
    # weights and thresholds that differ per real server, 0 and the largest among them
    shapes = ((0, 0, 0), (3, 100, 50), (2**31 - 1, 0, 0), (1, 7, 0))
    return tuple(dataclasses.replace(rs, weight=w, upper_threshold=u, lower_threshold=low)
                 for rs, (w, u, low) in zip(real_servers, itertools.cycle(shapes)))  # fmt: skip


def _tunnelled(view: ClusterSpec, other: ClusterSpec | None) -> Iterator[tuple[RealServer, ...]]:
    """Every tunnel option with a port where it has one, to real servers of this family
    and, through the same option, of the other family."""
    for option in tunnel_options():
        port = {"tunnel_port": 6000 + option.tunnel.ipvs_type} if option.tunnel.port else {}
        for hosts in (view.real_servers, other.real_servers if other else ()):
            if hosts:
                yield tuple(dataclasses.replace(rs, tunnel=option.tunnel.name,
                                                tunnel_checksum=option.checksum.name, **port)
                            for rs in hosts)  # fmt: skip


def control_table(spec: ClusterSpec, *, schedulers: Iterable[str], engines: Iterable[str] = ()
                  ) -> Table:  # fmt: skip
    """The catalogue of services and real servers, every family of ``spec``."""
    ports = itertools.count(_FIRST_PORT)
    schedulers, engines = list(schedulers), list(engines)
    views = [spec.in_family(f) for f in FAMILIES.values() if not spec.lacks(f)]
    table: Table = []
    for view in views:
        base = view.service
        rss = _weighted(view.real_servers)
        other = next((v for v in views if v is not view), None)

        # every weight and threshold shape on the protocol x mode services; one real
        # server elsewhere (a netlink request costs ~0.3 s under emulation)
        one = rss[1:2]

        def add(real_servers: tuple[RealServer, ...] = one, **changes: object) -> None:
            changes.setdefault("port", next(ports))
            table.append((dataclasses.replace(base, **changes), real_servers))  # noqa: B023

        for protocol, mode in itertools.product(PROTOCOLS, MODES):
            add(rss, protocol=protocol, mode=mode, scheduler="rr",
                nat_port=next(ports) if MODES[mode].maps_port else None)  # fmt: skip
        for name in schedulers:
            add(scheduler=name, sched_flags=SCHEDULERS[name].flags)
        add(persistence=300, persistence_prefix=view.service.family.host_prefix // 4 * 3)
        add(port=0, persistence=60)  # every port of the VIP
        add(fwmark=_FWMARK + view.service.family.version, persistence=120)
        add(protocol="udp", one_packet=True)
        for engine in engines:
            protocol = PERSISTENCE_ENGINES[engine].protocols[0]
            add(protocol=protocol, persistence=30, persistence_engine=engine)
        for hosts in _tunnelled(view, other):
            add(hosts[:1], mode="tun")
    return table


def expected_table(table: Table) -> State:
    """What the kernel should report for the catalogue, by service identity."""
    states = (expected_state(svc, rss) for svc, rss in table)
    return {service_key(s): s for s in states}


def reported_table(cluster: Cluster, director: str | None = None) -> State:
    """The director's table as the kernel reports it over netlink, settings only."""
    ipvs = cluster.ipvs_of(director or cluster.spec.active.name)
    return {service_key(s): settings(s) for s in ipvs.services()}


@contextlib.contextmanager
def loaded(cluster: Cluster, table: Table, *, by_ipvsadm: bool = False) -> Iterator[str]:
    """The catalogue in the active director's table, set over netlink or (much faster
    under emulation) by one ``ipvsadm -R`` of its ``ipvsadm_commands``; yields what
    ipvsadm said. The cluster's own service is put back afterwards."""
    try:
        if not by_ipvsadm:
            cluster.ipvs.apply_all(table)
            yield ""
            return
        commands = [c for svc, rss in table for c in ipvsadm_commands(svc, rss)]
        with tempfile.NamedTemporaryFile("w", prefix="lvstb-ipvsadm-", suffix=".rules") as f:
            f.write("".join(c.removeprefix("ipvsadm ") + "\n" for c in commands))
            f.flush()
            d = cluster.spec.active.name
            yield cluster.run(d, f"ipvsadm -C && ipvsadm -R < {f.name} 2>&1").strip()
    finally:
        cluster.ipvs.apply(cluster.spec.service, cluster.spec.real_servers)


# -- edits in place ----------------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """One change made in place (IPVS_CMD_SET_SERVICE / _SET_DEST) to a service."""

    name: str
    service: Callable[[Service], Service] = lambda s: s
    real_server: Callable[[RealServer], RealServer] = lambda r: r
    base: dict[str, object] = dataclasses.field(default_factory=dict)  # the service before


def _set(**changes: object) -> Callable[[T], T]:
    return lambda entry: dataclasses.replace(entry, **changes)


EDITS = (
    Edit("scheduler rr to sh with its flags",
         _set(scheduler="sh", sched_flags=("sh-fallback", "sh-port"))),
    Edit("scheduler flags cleared", _set(sched_flags=()),
         base={"scheduler": "mh", "sched_flags": ("mh-fallback", "mh-port")}),
    Edit("persistence on, with a client block",
         lambda s: dataclasses.replace(s, persistence=600,
                                       persistence_prefix=s.family.host_prefix // 2)),
    Edit("persistence off", _set(persistence=0, persistence_prefix=None),
         base={"persistence": 120, "persistence_prefix": 16}),
    Edit("persistence timeout changed", _set(persistence=7), base={"persistence": 120}),
    Edit("persistence engine removed", _set(persistence_engine=None),
         base={"protocol": "udp", "persistence": 30, "persistence_engine": "sip"}),
    Edit("one-packet on", _set(one_packet=True), base={"protocol": "udp"}),
    Edit("weight and thresholds", real_server=lambda r: dataclasses.replace(
        r, weight=r.weight + 5, upper_threshold=40, lower_threshold=20)),
    Edit("forwarding method NAT to DR", _set(mode="dr"), base={"mode": "nat"}),
    Edit("tunnel ipip to GUE with remote checksum",
         real_server=_set(tunnel="gue", tunnel_checksum="remcsum", tunnel_port=6080),
         base={"mode": "tun"}),
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class EditOutcome:
    before: ServiceState
    after: ServiceState  # as reported after the edit
    expected: ServiceState  # the edited service as expected_state gives it
    same_service: bool  # the kernel's service kept its counters (not deleted and re-added)


def edit_in_place(cluster: Cluster, edit: Edit, port: int) -> EditOutcome | None:
    """Set a service, make ``edit`` in place, read the service back. None when the
    edit needs an engine this kernel lacks."""
    base = dataclasses.replace(cluster.spec.service, port=port, nat_port=None, **edit.base)
    after = edit.service(base)
    if any(e and e not in available_engines()
           for e in (base.persistence_engine, after.persistence_engine)):  # fmt: skip
        return None
    rss = tuple(cluster.spec.real_servers)
    ipvs = cluster.ipvs
    with loaded(cluster, [(base, rss)]):
        before = ipvs.service()
        if after != base:
            ipvs.edit_service(after)
        for rs in rss:
            if (changed := edit.real_server(rs)) != rs or after.mode != base.mode:
                ipvs.edit_real_server(after, changed)
        reported = ipvs.service()
    return EditOutcome(
        before=settings(before),
        after=settings(reported),
        expected=expected_state(after, [edit.real_server(r) for r in rss]),
        same_service=service_key(before) == service_key(reported),
    )


# -- ipvsadm -S / -R ------------------------------------------------------------------------


@record_kind("ipvsadm-round-trip")
@dataclass(frozen=True, kw_only=True)
class RoundTripRecord:
    key: str
    services: int
    saved: str  # ipvsadm -S -n of the catalogue
    restored: str  # ipvsadm -S -n after ipvsadm -C and ipvsadm -R of the saved text
    lost: list[str]  # services whose settings differ after the round trip (netlink)...
    # ...where only real servers' thresholds differ: ipvsadm -S writes no -x / -y
    thresholds_lost: list[str]


def ipvsadm_round_trip(cluster: Cluster, table: Table) -> RoundTripRecord:
    """Save the catalogue with ``ipvsadm -S -n``, clear, restore with ``ipvsadm -R``,
    save again; and compare what netlink reports before and after."""
    d = cluster.spec.active.name
    with loaded(cluster, table, by_ipvsadm=True):  # the netlink way is test_what_is_set's
        before = reported_table(cluster)
        saved = cluster.run(d, "ipvsadm -S -n")
        restored = cluster.run(
            d, "f=$(mktemp) && ipvsadm -S -n > $f && ipvsadm -C && ipvsadm -R < $f; "
               "rc=$?; rm -f $f; ipvsadm -S -n; [ $rc = 0 ]")  # fmt: skip
        after = reported_table(cluster)
    changed = [k for k in before if before[k] != after.get(k)]
    only_thresholds = [
        k for k in changed if k in after and _no_thresholds(before[k]) == _no_thresholds(after[k])
    ]
    return record(RoundTripRecord(
        key="catalogue", services=len(before), saved=saved, restored=restored,
        lost=[service_name(k) for k in changed if k not in only_thresholds],
        thresholds_lost=[service_name(k) for k in only_thresholds]))  # fmt: skip


def _no_thresholds(state: ServiceState) -> ServiceState:
    quiet = tuple(dataclasses.replace(d, upper_threshold=0, lower_threshold=0)
                  for d in state.dests)  # fmt: skip
    return dataclasses.replace(state, dests=quiet)


@dataclass(frozen=True, kw_only=True)
class IpvsadmBuild:
    output: str  # what ipvsadm -R said (nothing when all went well)
    reported: State


def built_by_ipvsadm(cluster: Cluster, table: Table) -> IpvsadmBuild:
    """The catalogue built by ipvsadm from ``ipvsadm_commands`` (one ``ipvsadm -R``
    reading them all), read back over netlink: a second way into the same kernel."""
    with loaded(cluster, table, by_ipvsadm=True) as output:
        reported = reported_table(cluster)
    return IpvsadmBuild(output=output, reported=reported)


def service_name(key: tuple[int, int, int, str, int]) -> str:
    """A service's identity (service_key) in one short line."""
    family, fwmark, protocol, addr, port = key
    return f"fwmark {fwmark} af {int(family)}" if fwmark else f"{protocol} {addr} {port}"


# -- refusals -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A request the kernel must refuse, and the errno it answers with (the request in
    pyroute2's field names: the value objects would refuse most of these first)."""

    name: str
    errno: int
    service: dict[str, object]
    dest: dict[str, object] | None = None
    command: str = "add"  # of the dest if there is one, else of the service
    existing: bool = False  # the service exists first
    source: str = "net/netfilter/ipvs/ip_vs_ctl.c"


# the refusals' own addresses (documentation ranges): they only ever enter the table
_SVC = {"addr": "203.0.113.250", "port": 9990, "protocol": 6, "sched_name": "rr"}
_RS = {"addr": "198.51.100.250", "port": 9990, "fwd_method": 0, "weight": 1}
_PERSISTENT = {"flags": {"flags": 1, "mask": 0xFFFF}, "timeout": 30}

REFUSALS = (
    Refusal("a service added twice", errno.EEXIST, _SVC, existing=True,
            source="ip_vs_ctl.c ip_vs_genl_set_cmd: IPVS_CMD_NEW_SERVICE on one found"),
    Refusal("a service edited that does not exist", errno.ESRCH, _SVC, command="set",
            source="ip_vs_ctl.c ip_vs_genl_set_cmd"),
    Refusal("a real server for a service that does not exist", errno.ESRCH, _SVC, _RS,
            source="ip_vs_ctl.c ip_vs_genl_set_cmd"),
    Refusal("an unknown scheduler", errno.ENOENT, _SVC | {"sched_name": "lvstb"},
            source="ip_vs_ctl.c ip_vs_add_service: ip_vs_scheduler_get"),
    Refusal("an unknown persistence engine", errno.ENOENT,
            _SVC | _PERSISTENT | {"pe_name": "lvstb"},
            source="ip_vs_ctl.c ip_vs_add_service: ip_vs_pe_getbyname"),
    Refusal("a real server added twice", errno.EEXIST, _SVC, _RS, existing=True,
            command="add twice", source="ip_vs_ctl.c ip_vs_add_dest"),
    Refusal("a real server edited that the service lacks", errno.ENOENT, _SVC, _RS,
            command="set", existing=True, source="ip_vs_ctl.c ip_vs_edit_dest"),
    Refusal("a negative weight", errno.ERANGE, _SVC, _RS | {"weight": 0xFFFFFFFF},
            existing=True, source="ip_vs_ctl.c ip_vs_add_dest: udest->weight < 0"),
    Refusal("a lower threshold above the upper", errno.ERANGE, _SVC,
            _RS | {"u_thresh": 10, "l_thresh": 20}, existing=True,
            source="ip_vs_ctl.c ip_vs_add_dest"),
    Refusal("a GUE tunnel without a port", errno.EINVAL, _SVC,
            _RS | {"fwd_method": 2, "tun_type": 1, "tun_port": 0}, existing=True,
            source="ip_vs_ctl.c ip_vs_add_dest: tun_port == 0 for GUE"),
    Refusal("an IPv6 client block longer than 128 bits", errno.EINVAL,
            _SVC | _PERSISTENT | {"addr": "2001:db8::250",
                                  "netmask": FAMILIES["ipv6"].ipvs_netmask(129)},
            source="ip_vs_ctl.c ip_vs_add_service: plen < 1 || plen > 128"),
)  # fmt: skip


def refused_with(cluster: Cluster, refusal: Refusal) -> int:
    """The errno the kernel answered ``refusal`` with (0: it was accepted)."""
    ipvs = cluster.ipvs
    with loaded(cluster, []):
        return ipvs.request_errno(refusal.service, refusal.dest, command=refusal.command,
                                  existing=refusal.existing)  # fmt: skip


# -- sysctls ------------------------------------------------------------------------------


def _in_new_namespace(script: str) -> str:
    """``script`` in a network namespace of its own, gone when it exits: IPVS's pernet
    state there is the kernel's fresh default, and nothing written there leaks out."""
    # bash: dash's read builtin takes a byte per read(2), and a /proc/sys file gives
    # only its first byte that way (proc_dointvec returns nothing at an offset)
    return f"unshare --net bash -c {shlex.quote(script)}"


def fresh_sysctls(cluster: Cluster) -> dict[str, str]:
    """Every file of net/ipv4/vs and its value in a new namespace (the registering
    modules loaded first), values' whitespace folded to one space."""
    modules = " ".join(s.module for s in SYSCTLS.values() if s.module)
    script = (f"cd {SYSCTL_DIR} && for f in *; do "
              "printf '%s\\t%s\\n' \"$f\" \"$(tr -s '\\t ' '  ' < $f)\"; done")  # fmt: skip
    load = f"modprobe -a {modules} 2>/dev/null"
    out = cluster.run(cluster.spec.active.name, f"{load}; {_in_new_namespace(script)}")
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def fresh_timeouts(cluster: Cluster) -> Timeouts:
    """The connection-table timeouts (ipvsadm -L --timeout) of a new namespace."""
    return parse_timeouts(cluster.run(cluster.spec.active.name,
                                      _in_new_namespace(TIMEOUTS_COMMAND)))  # fmt: skip


@record_kind("sysctl-write")
@dataclass(frozen=True, kw_only=True)
class SysctlWrite:
    key: str  # "name=value"
    name: str
    value: str
    accepted: bool  # the write returned success
    read_back: str  # the value right after it
    before: str  # the fresh namespace's value


def sysctl_writes(cluster: Cluster, writes: Iterable[tuple[str, str]]) -> list[SysctlWrite]:
    """Each write made in one namespace created for them, the sysctl's fresh value put
    back after each: accepted or refused, and what the sysctl reads right after."""
    writes = list(writes)
    # shell builtins only: a fork costs ~0.1 s under emulation, and there are 100+ writes
    steps = [(f"f={SYSCTL_DIR}/{name}; IFS= read -r b < $f; "
              f"if echo {shlex.quote(value)} > $f 2>/dev/null; then r=1; else r=0; fi; "
              # one line per write, "|"-separated: values hold tabs (sync_threshold)
              f"IFS= read -r a < $f; printf '%s|%s|%s|%s\\n' {name} $r \"$a\" \"$b\"; "
              "echo \"$b\" > $f")
             for name, value in writes]  # fmt: skip
    out = cluster.run(cluster.spec.active.name, _in_new_namespace("\n".join(steps)))
    results = []
    for (name, value), line in zip(writes, out.splitlines(), strict=True):
        got_name, accepted, read_back, before = line.split("|")
        assert got_name == name, line
        results.append(record(SysctlWrite(
            key=f"{name}={value}", name=name, value=value, accepted=accepted == "1",
            read_back=" ".join(read_back.split()), before=" ".join(before.split()))))  # fmt: skip
    return results


# -- namespaces ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NamespaceView:
    """What one director's namespace shows."""

    services: frozenset[tuple[int, int, int, str, int]]
    connections: int
    sysctl: str  # net.ipv4.vs.<ISOLATION_SYSCTL>


ISOLATION_SYSCTL = "sync_retries"
_ISOLATION_PORT = 9999


def _view(cluster: Cluster, director: str) -> NamespaceView:
    value = cluster.run(director, f"cat {SYSCTL_DIR}/{ISOLATION_SYSCTL}").strip()
    return NamespaceView(services=frozenset(reported_table(cluster, director)),
                         connections=len(read_connections(cluster.pid(director))),
                         sysctl=value)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Isolation:
    changed: NamespaceView  # the namespace changes were made in, after them
    other_before: NamespaceView
    other_after: NamespaceView
    added: tuple[int, int, int, str, int]  # the service added in the changed namespace


def namespace_isolation(cluster: Cluster) -> Isolation:
    """A service added, a connection made and a sysctl set in the active director's
    namespace; the second director's namespace read before and after."""
    spec = cluster.spec
    active, other = (d.name for d in spec.directors[:2])
    extra = dataclasses.replace(spec.service, port=_ISOLATION_PORT, nat_port=None)
    other_before = _view(cluster, other)
    sysctl = f"{SYSCTL_DIR}/{ISOLATION_SYSCTL}"
    saved = cluster.run(active, f"cat {sysctl}").strip()
    try:
        cluster.ipvs.apply_all([(spec.service, spec.real_servers), (extra, spec.real_servers)])
        cluster.run(active, f"echo 3 > {sysctl}")
        client = spec.clients[0].name
        cluster.run(client, spec.service.transport.client(spec.service.endpoint, 1))
        changed = _view(cluster, active)
        other_after = _view(cluster, other)
    finally:
        cluster.run(active, f"echo {saved} > {sysctl}")
        cluster.ipvs.apply(spec.service, spec.real_servers)
    added = service_key(expected_state(extra, ()))
    return Isolation(changed=changed, other_before=other_before, other_after=other_after,
                     added=added)  # fmt: skip
