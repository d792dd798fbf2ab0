"""A running LVS cluster: a Mininet network on Linux bridges plus kernel IPVS.

The network is built once; ``configure()`` switches forwarding mode,
scheduler or real servers in place (real-server setup and the IPVS table),
so one topology serves a whole test session.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import os
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

from ..ipvs import Ipvs, ServiceState, ipvsadm_commands
from ..kernel import require_modules
from ..net import Capture, Neighbours, read_sysctls, write_sysctls
from ..registry import (
    OFFLOAD,
    PROTOCOLS,
    TUNNEL_CHECKSUMS,
    Checksums,
    DirectorHost,
    Family,
    RealServerHost,
    family_of,
    neutral_baseline,
)
from ..topology import ClusterSpec, RealServer
from ..util import REPO, Scoped, TestbedError
from ._cleanup import MARK_ENV, building, clean_native, mark_bridge

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

# Bridge names start with this prefix; a second cluster in the same kernel
# (the life-cycle tests) uses another one.
PREFIX_ENV = "LVS_TESTBED_PREFIX"
SERVER = "loadgen.server"  # the HTTP real-server program
# Extra client addresses: client i owns host numbers 128+64*i .. 191+64*i of
# the outside network (clipped to it), disjoint from every declared address.
EXTRA_FIRST_HOST = 128
EXTRA_PER_CLIENT = 64
# Mininet names interfaces <host>-eth<N>: a real server and a client have one,
# a director and the router eth0 outside and eth1 inside
RS_IF = "eth0"
# longest script line sent as it is; a longer one goes through a file (_sendable)
_LINE_MAX = 2048


def real_server_host(spec: ClusterSpec, rs: RealServer) -> RealServerHost:
    """One real server as the registry's setup hooks see it."""
    return RealServerHost(
        name=rs.name,
        interface=f"{rs.name}-{RS_IF}",
        address=str(rs.ip),
        vip=str(spec.service.vip),
        family=spec.service.family,
        dip=str(spec.service.dip),
        router=str(spec.router.inside),
        tunnel=spec.tunnel_of(rs),
        tunnel_port=spec.tunnel_port_of(rs),
        tunnel_checksum=TUNNEL_CHECKSUMS[rs.tunnel_checksum],
    )


def director_host(spec: ClusterSpec, name: str) -> DirectorHost:
    return DirectorHost(
        name=name, outside=f"{name}-eth0", inside=f"{name}-eth1", family=spec.service.family
    )


def _last_words(proc: Any, lines: int = 15) -> str:
    """The tail of an exited program's stderr, for the error that reports its exit."""
    stream = getattr(proc, "stderr", None)
    try:
        text = stream.read().decode(errors="replace") if stream else ""
    except (OSError, ValueError):
        text = ""
    tail = text.strip().splitlines()[-lines:]
    return "".join(f"\n  {line}" for line in tail)


def _terminated(command: str) -> str:
    """A command ready to close a { group }: ``;`` after it, unless it already ends in
    ``&`` (started in the background, as ``daemon ... &``)."""
    return command if command.rstrip().endswith("&") else f"{command};"


@contextlib.contextmanager
def _building() -> Iterator[None]:
    """One network build at a time in this kernel: a build's orphan cleanup must not
    take a concurrent run's bridges, made but not yet marked, for a crashed run's."""
    with open(Path(tempfile.gettempdir(), "lvs-testbed-build.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the run dies
        yield


def _say(msg: str) -> None:
    print(f"[cluster] {msg}", flush=True)


class Cluster(Scoped):
    """Build, reconfigure and tear down an LVS cluster from a ClusterSpec.

    >>> with Cluster(load_topology(mode="dr")) as cluster:
    ...     cluster.run("c1", "curl -s http://203.0.113.100/")
    """

    def __init__(self, spec: ClusterSpec, *, progress: Callable[[str], None] = _say) -> None:
        self.spec = spec
        self.base_spec = spec  # as declared; configure() changes self.spec
        self._say = progress
        self.net: Any = None
        self._programs: dict[tuple[str, str], Any] = {}  # (host, module) -> Popen
        # per director and thread: pyroute2's sockets belong to the thread that made them
        # (a lab answers a check asked from another terminal in a thread of its own)
        self._ipvs: dict[tuple[str, int], Ipvs] = {}
        self._neighbours: dict[str, Neighbours] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix="lvs-testbed-"))
        self._scripts = itertools.count()
        self.timings: dict[str, float] = {}
        self._started = 0.0  # monotonic time the network build began
        # per host, the setup configure() last made there and what undoes it (dropped
        # when anything else runs there), and the checksum handling on every interface
        self._applied: dict[str, tuple[list[str], list[str]]] = {}
        self._checksums: Checksums | None = None
        self._macs: dict[str, str] = {}
        # extra sections for describe(), e.g. the HA daemons' state while they run
        self.diagnostics: list[Callable[[], str]] = []

    # -- life cycle -------------------------------------------------------------------
    def start(self) -> None:
        from mininet.log import setLogLevel

        if os.geteuid() != 0:
            raise TestbedError("building the network needs root (Mininet)")
        require_modules(*self.spec.modules())
        setLogLevel("warning")
        # every process Mininet starts inherits the marker: how cleanup finds them
        os.environ[MARK_ENV] = str(os.getpid())
        with _building():
            self._build()
        self._address_hosts()
        self.timings["topology_build_s"] = time.monotonic() - self._started
        self._say(f"network up in {self.timings['topology_build_s']:.1f} s")
        self._start_real_servers()
        self.configure(self.spec)
        self.timings["cluster_ready_s"] = time.monotonic() - self._started

    def _build(self) -> None:
        """Mininet hosts, links and bridges, the bridges marked as this run's."""
        from mininet.net import Mininet
        from mininet.nodelib import LinuxBridge

        clean_native(orphans_only=True, quiet=True)  # leftovers of a crashed earlier run
        self._started = time.monotonic()
        self._say(f"building topology {self.spec.name!r} ({len(self.spec.hosts)} hosts)")
        net = Mininet(
            topo=None, build=False, switch=LinuxBridge, controller=None, waitConnected=False
        )
        self.net = net
        prefix = os.environ.get(PREFIX_ENV, "lvs")
        outside = net.addSwitch(f"{prefix}out0")
        inside = net.addSwitch(f"{prefix}in0")
        for c in self.spec.clients:
            net.addLink(net.addHost(c.name, ip=None), outside, intfName1=f"{c.name}-eth0")
        for h in (self.spec.router, *self.spec.directors):
            node = net.addHost(h.name, ip=None)
            net.addLink(node, outside, intfName1=f"{h.name}-eth0")
            net.addLink(node, inside, intfName1=f"{h.name}-eth1")
        for r in self.spec.real_servers:
            net.addLink(net.addHost(r.name, ip=None), inside, intfName1=f"{r.name}-{RS_IF}")
        with building():  # the bridges exist from net.start() on, unmarked until here
            net.build()
            net.start()
            for bridge in (outside, inside):
                mark_bridge(bridge.name, os.getpid())

    def stop(self) -> None:
        """Stop servers, IPVS socket and network. Safe to call twice."""
        for ipvs in self._ipvs.values():
            with contextlib.suppress(Exception):
                ipvs.close()
        self._ipvs.clear()
        for neighbours in self._neighbours.values():
            with contextlib.suppress(Exception):
                neighbours.stop()
        self._neighbours.clear()
        for host, module in list(self._programs):
            self.stop_program(host, module)
        if self.net is not None:
            self._say("tearing down the network")
            with contextlib.suppress(Exception):
                self.net.stop()
            self.net = None
        clean_native(owner=os.getpid(), quiet=True)

    # -- building blocks ----------------------------------------------------------------
    @property
    def family(self) -> Family:
        """The family of the cluster's own networks."""
        return family_of(self.spec.outside.network_address)

    def _address_hosts(self) -> None:
        """Every host's addresses in every family the topology has; routers forward."""
        scripts: dict[str, list[str]] = {}
        for view in self.base_spec.views():
            fam = view.service.family
            olen, ilen, flags = view.outside.prefixlen, view.inside.prefixlen, fam.address_flags
            for c in view.clients:
                scripts.setdefault(c.name, []).append(
                    f"ip addr add {c.ip}/{olen} dev {c.name}-eth0 {flags}"
                )
            for h in (view.router, *view.directors):
                scripts.setdefault(h.name, []).extend([
                    f"ip addr add {h.outside}/{olen} dev {h.name}-eth0 {flags}",
                    f"ip addr add {h.inside}/{ilen} dev {h.name}-eth1 {flags}",
                    f"sysctl -qw {fam.forwarding}=1",
                ])  # fmt: skip
            for r in view.real_servers:
                scripts.setdefault(r.name, []).append(
                    f"ip addr add {r.ip}/{ilen} dev {r.name}-{RS_IF} {flags}"
                )
        self.run_each(scripts)
        self.claim_service_addresses()

    def claim_service_addresses(self) -> None:
        """Put VIP and DIP statically on the active director (no VRRP), in every family."""
        d = self.spec.active.name
        self.run(d, *(f"ip addr replace {a} dev {i} {flags}"
                      for a, i, flags in self._service_addresses(d)))  # fmt: skip

    def release_service_addresses(self, director: str | None = None) -> None:
        """Take VIP and DIP off a director (default: the active one; VRRP will own them)."""
        d = director or self.spec.active.name
        held = self.local_addresses(d)  # read in-process: most often there is nothing to do
        addresses = [(a, i) for a, i, _ in self._service_addresses(d)
                     if ipaddress.ip_interface(a).ip in held]  # fmt: skip
        if addresses:
            self.run(d, *(f"ip addr del {a} dev {i} 2>/dev/null; true" for a, i in addresses))

    def local_addresses(self, host: str) -> set[IPAddress]:
        """The addresses a host holds now, in every family the topology has (its
        namespace's own view, read from /proc without a process)."""
        pid = self.pid(host)
        return {ipaddress.ip_address(a) for view in self.base_spec.views()
                for a in view.service.family.local_addresses(pid)}  # fmt: skip

    def _service_addresses(self, director: str) -> list[tuple[str, str, str]]:
        """(address/prefix, interface, ip-addr flags) of VIP and DIP in every family."""
        return [
            (a, i, view.service.family.address_flags)
            for view in self.base_spec.views()
            for a, i in view.service_addresses(director)
        ]

    def _start_real_servers(self) -> None:
        for r in self.spec.real_servers:
            self.start_real_server(r.name, wait=False)
        for r in self.spec.real_servers:
            self.wait_program(r.name, SERVER)

    def start_program(self, host: str, module: str, *args: str, wait: bool = True) -> Any:
        """Start ``python -m module args --ready-file F`` in a host, one per (host, module)."""
        self.stop_program(host, module)
        ready = self.workdir / f"{host}.{module}.ready"
        ready.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", module, *args, "--ready-file", str(ready)]
        proc = self.node(host).popen(cmd, cwd=str(REPO))
        self._programs[host, module] = proc
        if wait:
            self.wait_program(host, module)
        return proc

    def ensure_program(self, host: str, module: str, *args: str, wait: bool = True) -> Any:
        """Like start_program, unless it already runs."""
        proc = self._programs.get((host, module))
        if proc is not None and proc.poll() is None:
            return proc
        return self.start_program(host, module, *args, wait=wait)

    def wait_program(self, host: str, module: str) -> None:
        proc = self._programs[host, module]
        ready = self.workdir / f"{host}.{module}.ready"
        deadline = time.monotonic() + 120  # Python start-up is slow under emulation
        while not ready.exists():
            if proc.poll() is not None:
                raise TestbedError(
                    f"{module} on {host} exited at start (status {proc.returncode})"
                    + _last_words(proc)
                )
            if time.monotonic() > deadline:
                raise TestbedError(f"{module} on {host} did not start")
            time.sleep(0.2)

    def stop_program(self, host: str, module: str) -> None:
        proc = self._programs.pop((host, module), None)
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.terminate()
                proc.wait(5)

    def server_args(self, name: str) -> list[str]:
        """Arguments of one real server's program: its name, every protocol served on
        the service's ports, and the addresses SCTP binds to (its own and the VIP, in
        every family: an SCTP server answers from the address it is bound to)."""
        ports = sorted({self.spec.service.port, self.spec.service.nat_port or 0} - {0})
        args = ["--name", name]
        for proto in PROTOCOLS.values():
            args += [a for p in ports for a in (proto.server_option, str(p))]
        for view in self.base_spec.views():
            own, vip = view.real_server(name).ip, view.service.vip
            args += ["--sctp-address", str(own), "--sctp-address", str(vip)]
        return args

    def start_real_server(self, name: str, *, wait: bool = True) -> None:
        """(Re)start the HTTP real-server program of one real server."""
        self.start_program(name, SERVER, *self.server_args(name), wait=wait)

    def stop_real_server(self, name: str) -> None:
        """Stop one real server's program: its ports refuse connections (a service failure)."""
        self.stop_program(name, SERVER)

    def configure(self, spec: ClusterSpec, *, checksums: Checksums = OFFLOAD) -> None:
        """Switch mode, scheduler, weights, real servers, address family or checksum
        handling without a rebuild.

        ``spec`` is the base spec or one of its family views, changed with
        ``with_service`` and the like. A real server whose setup configure made,
        with nothing run there since, is left alone if its setup stays, or has that
        setup undone and the new one made; any other is first put back to neutral
        in every family. All hosts are set up at once (process forks are what cost
        under emulation).
        """
        # the network has the declared hosts: any subset of them may serve
        if {r.name for r in spec.real_servers} - {r.name for r in self.base_spec.real_servers}:
            raise TestbedError("configure() can change real servers, not add new hosts")
        mode = spec.service.forwarding
        require_modules(*spec.modules())
        self.spec = spec
        # per host: (its setup, what undoes it); configure runs only what changed
        wanted: dict[str, tuple[list[str], list[str]]] = {}
        for rs in spec.real_servers:
            host = real_server_host(spec, rs)
            wanted[rs.name] = (mode.real_server_setup(host), mode.real_server_teardown(host))
        for d in spec.directors:
            wanted[d.name] = (mode.director_setup(director_host(spec, d.name)), [])
        batch: dict[str, list[str]] = {h.name: [] for h in self.base_spec.hosts}
        for name, (setup, _undo) in wanted.items():
            before = self._applied.get(name)
            if before is not None and before[0] == setup:
                continue
            # from a setup this cluster made, the way back is known; from anything
            # else (a test ran commands there), back to neutral in every family
            batch[name] += before[1] if before is not None else self._neutral(name)
            batch[name] += setup
        if checksums is not self._checksums:
            for h, cmds in batch.items():
                devices = [i for i in self.node(h).intfNames() if i != "lo"]
                cmds += [f"ethtool -K {i} {checksums.ethtool}" for i in devices]
        self.run_each(batch, changes_setup=False)
        # neighbours learned under the previous mode or a failover: forgotten everywhere
        self.forget_neighbours()
        self._applied.update(wanted)
        self._checksums = checksums
        self.ipvs.apply(spec.service, spec.real_servers)
        self._say(
            f"configured {mode.title} {spec.service.transport.title} {spec.service.scheduler} "
            f"{spec.service.endpoint} -> {len(spec.real_servers)} real servers"
            + ("" if checksums is OFFLOAD else f" ({checksums.title})")
        )

    def _neutral(self, name: str) -> list[str]:
        """A real server back to neutral in every family (nothing for another host).
        A command already given for one family (a tunnel device's teardown) is not
        repeated for the next."""
        return list(dict.fromkeys(
            cmd
            for view in self.base_spec.views()
            if any(r.name == name for r in view.real_servers)
            for cmd in neutral_baseline(real_server_host(view, view.real_server(name)))
        ))  # fmt: skip

    def make_neutral(self, *names: str) -> None:
        """Real servers back to the neutral baseline in every family: no VIP, no tunnel,
        the neighbour defaults, the default route via the router (no mode at all). One
        whose setup configure made is undone exactly; one already neutral is left alone."""
        batch = {}
        for name in names:
            before = self._applied.get(name)
            if before is None or before[0]:
                batch[name] = before[1] if before is not None else self._neutral(name)
        self.run_each(batch)
        self._applied.update({name: ([], []) for name in names})  # neutral: nothing to undo

    def unconfigure(self, spec: ClusterSpec) -> None:
        """No virtual service at all: every director's table empty, the real servers
        neutral. ``spec`` becomes the current one (what a lab's checks look for)."""
        require_modules(*spec.modules())
        self.spec = spec
        for d in spec.directors:
            self.ipvs_of(d.name).flush()
        self.make_neutral(*(r.name for r in self.base_spec.real_servers))
        self.forget_neighbours()

    def forget_neighbours(self) -> None:
        """Flush every host's neighbour caches: after VIP or DIP moved, a client's entry
        for the VIP or a real server's for the DIP may still name the other director."""
        for h in self.base_spec.hosts:
            self.neighbours(h.name).flush()

    def neighbours(self, host: str) -> Neighbours:
        """A host's ARP and NDP caches over rtnetlink (one socket per host, kept)."""
        if host not in self._neighbours:
            neighbours = Neighbours(self.pid(host))
            neighbours.start()
            self._neighbours[host] = neighbours
        return self._neighbours[host]

    # -- access -------------------------------------------------------------------------
    def node(self, name: str) -> Any:
        if self.net is None:
            raise TestbedError("the cluster is not running")
        return self.net.get(name)

    def pid(self, name: str) -> int:
        return int(self.node(name).pid)

    def run(self, host: str, *commands: str, check: bool = True,
            changes_setup: bool = True) -> str:  # fmt: skip
        """Run shell commands in a host (joined with &&); raise on failure."""
        return self.run_each({host: commands}, check=check, changes_setup=changes_setup)[host]

    def run_each(self, commands: Mapping[str, Sequence[str]], *, check: bool = True,
                 changes_setup: bool = True) -> dict[str, str]:  # fmt: skip
        """Run each host's shell commands (joined with &&), all hosts at once; their
        output by host. Raise on the first failure, after every host has finished.

        Unless told the commands leave the mode's setup alone, a host they ran on is
        set up afresh by the next configure().
        """
        sent = {}
        for host, cmds in commands.items():
            if not cmds:
                continue
            node = self.node(host)
            script = " && ".join(f"{{ {_terminated(c)} }}" for c in cmds)  # no subshell fork
            node.sendCmd(f"{self._sendable(host, script)}; echo __rc=$?")
            if changes_setup:
                self._applied.pop(host, None)
            sent[host] = (node, script)
        out, failed = {host: "" for host in commands}, []
        for host, (node, script) in sent.items():
            body, _, rc = node.waitOutput().rpartition("__rc=")
            out[host] = body
            if check and rc.strip() != "0":
                failed.append(f"{host}: command failed ({rc.strip()}): {script}\n{body.strip()}")
        if failed:
            raise TestbedError(failed[0])
        return out

    def sysctls(self, host: str, *patterns: str) -> dict[str, str]:
        """path -> value of the /proc/sys files matching the globs, as the host sees
        them: read from this process (no process in the host)."""
        return read_sysctls(self.pid(host), patterns)

    def write_sysctls(self, host: str, values: Mapping[str, str], *,
                      changes_setup: bool = True) -> list[str]:  # fmt: skip
        """Write /proc/sys files in a host from this process; the paths refused. As for
        run_each: unless told otherwise, the host is set up afresh by the next configure()."""
        if values and changes_setup:
            self._applied.pop(host, None)
        return write_sysctls(self.pid(host), values)

    def _sendable(self, host: str, script: str) -> str:
        """The script as one short line for the host's shell: a long one (or one of
        several lines) is written to a file and sourced. The shell reads a pty whose
        line discipline keeps at most 4095 characters of a line (N_TTY_BUF_SIZE):
        a longer line never reaches it, and the command never returns; and Mininet
        takes each prompt for the end of the output, so a second line would be lost."""
        if len(script) <= _LINE_MAX and "\n" not in script:
            return script
        path = self.workdir / f"{host}.{next(self._scripts)}.sh"
        path.write_text(script + "\n")
        return f". {path}"

    @property
    def ipvs(self) -> Ipvs:
        """Netlink IPVS control of the active director."""
        return self.ipvs_of(self.spec.active.name)

    def ipvs_of(self, director: str) -> Ipvs:
        """Netlink IPVS control of any director."""
        key = (director, threading.get_ident())
        if key not in self._ipvs:
            self._ipvs[key] = Ipvs(netns=f"/proc/{self.pid(director)}/ns/net")
        return self._ipvs[key]

    def switch_port(self, intf: str) -> str:
        """The bridge-side end of a host interface: setting it down cuts the cable."""
        link = self.node(intf.split("-", 1)[0]).intf(intf).link
        return str(link.intf2.name if link.intf1.name == intf else link.intf1.name)

    def service_state(self) -> ServiceState:
        return self.ipvs.service()

    def client_addresses(
        self, client: str, count: int, *, spec: ClusterSpec | None = None
    ) -> list[str]:
        """``count`` extra source addresses on a client, added once and kept (in the
        family of ``spec``, a view of the cluster; default: the current spec's).

        For many source addresses (hashing schedulers) or many connections to
        one VIP:port (each address has its own 64k ports).
        """
        s = spec or self.spec
        names = [c.name for c in s.clients]
        if client not in names:
            raise TestbedError(f"{client!r} is not a client (clients: {', '.join(names)})")
        net = s.outside
        declared = {c.ip for c in s.clients} | {h.outside for h in (s.router, *s.directors)}
        declared.add(s.service.vip)
        first = EXTRA_FIRST_HOST + EXTRA_PER_CLIENT * names.index(client)
        hosts = [
            h
            for h in range(first, first + EXTRA_PER_CLIENT)
            if h < net.num_addresses - 1 and net.network_address + h not in declared
        ]
        if count > len(hosts):
            raise TestbedError(f"{client} has room for {len(hosts)} extra addresses, not {count}")
        addrs = [str(net.network_address + h) for h in hosts[:count]]
        dev = f"{client}-eth0"
        present = set(
            self.run(client, f"ip {s.service.family.ip_option} -o addr show dev {dev}").split()
        )
        missing = [a for a in addrs if f"{a}/{net.prefixlen}" not in present]
        if missing:
            fam = s.service.family
            own = next(c.ip for c in s.clients if c.name == client)
            self.run(
                client,
                *(
                    f"ip addr add {a}/{net.prefixlen} dev {dev} {fam.address_flags}"
                    for a in missing
                ),
                # connections that bind no address keep leaving from the client's own:
                # IPv6 would pick any address of the prefix (RFC 6724 ties them)
                f"ip route replace {net} dev {dev} src {own} metric {fam.prefix_route_metric}",
            )
        return addrs

    def mac(self, intf: str) -> str:
        """An interface's MAC address (read once: the network's links live as long as it)."""
        if not self._macs:
            hosts = {h.name: self.node(h.name).intfNames() for h in self.base_spec.hosts}
            read = {h: [f"cat /sys/class/net/{i}/address" for i in names if i != "lo"]
                    for h, names in hosts.items()}  # fmt: skip
            for host, out in self.run_each(read, changes_setup=False).items():
                names = [i for i in hosts[host] if i != "lo"]
                self._macs.update(zip(names, out.split(), strict=True))
        return self._macs[intf]

    def capture(self, *points: str) -> Capture:
        """Capture on interfaces named ``<host>-eth<N>``."""
        return Capture({p: self.pid(p.split("-", 1)[0]) for p in points})

    # -- diagnostics --------------------------------------------------------------------
    def describe(self) -> str:
        """Director IPVS table, counters and the sysctls that decide forwarding."""
        if self.net is None:
            return "(cluster not running)"
        s = self.spec
        d = s.active.name
        fam = self.family.sysctl
        sections = [
            (f"{d}: ipvsadm -Ln --stats", "ipvsadm -Ln --stats"),
            (f"{d}: ipvsadm -Lnc (connections)", "ipvsadm -Lnc | head -40"),
            (f"{d}: sysctls", f"sysctl {fam}.ip_forward; sysctl net.ipv4.vs 2>/dev/null"),
            (f"{d}: addresses", "ip -br addr"),
        ]
        out = [
            "--- the table the testbed set, as ipvsadm commands\n"
            + "\n".join(ipvsadm_commands(s.service, s.real_servers))
        ]
        for title, cmd in sections:
            out.append(f"--- {title}\n{self.run(d, cmd, check=False).strip()}")
        for extra in self.diagnostics:
            with contextlib.suppress(Exception):
                out.append(extra())
        for r in s.real_servers:
            dev = f"{r.name}-{RS_IF}"
            keys = " ".join(
                shlex.quote(f"{fam}.conf.{i}.{k}")
                for i in ("all", "lo", dev)
                for k in ("arp_ignore", "arp_announce", "rp_filter")
            )
            out.append(
                f"--- {r.name}: addresses, routes, sysctls\n"
                + self.run(
                    r.name, f"ip -br addr; ip route; sysctl {keys} 2>/dev/null", check=False
                ).strip()
            )
        return "\n".join(out)
