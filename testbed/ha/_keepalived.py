"""keepalived as the system under test: configuration as data, one daemon per host.

A ``Vrrp`` declares the failover pair (version, advert_int, priorities,
preemption, gratuitous-ARP settings). ``render()`` turns it, and a
virtual_server block rendered by testbed.checks, into one director's
keepalived.conf (keepalived.conf(5)); ``Keepalived`` runs it inside that
director's namespace with its own config, pid files, log and state file, and
always stops it.

>>> conf = render(spec, spec.directors[1], vrrp=Vrrp(version=3, advert_int=0.3),
...               notify="/tmp/x/notify.sh")
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cluster import crash
from ..topology import ClusterSpec, TwoLegged
from ..util import TestbedError, tail_file

INSTANCE = "VI_LVS"

# "Sun Dec  6 08:36:16 2026: (VI_LVS) Entering MASTER STATE" (--log-console, local time)
_LOG_LINE = re.compile(r"^(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4}): (.*)$")


def parse_log(text: str) -> list[tuple[float, str]]:
    """(time, message) for every stamped line of a keepalived log, to the second."""
    out = []
    for line in text.splitlines():
        if m := _LOG_LINE.match(line):
            stamp = time.mktime(time.strptime(m[1], "%a %b %d %H:%M:%S %Y"))
            out.append((stamp, m[2]))
    return out


@dataclass(frozen=True, kw_only=True)
class Vrrp:
    """One VRRP failover pair: the first director is the preferred master."""

    version: int = 2
    advert_int: float = 1.0
    router_id: int = 51
    priorities: tuple[int, int] = (150, 100)
    preempt: bool = True
    garp_repeat: int = 5
    garp_delay: int = 5
    garp_interval: float = 0.0
    sync_daemon: bool = False  # keepalived's lvs_sync_daemon on the inside interface
    sync_id: int = 7

    @property
    def label(self) -> str:
        """Short name of the settings, e.g. ``v3-0.3s-garp3x2s-every0.2s``."""
        garp = (
            ""
            if (self.garp_repeat, self.garp_delay) == (5, 5)
            else f"-garp{self.garp_repeat}x{self.garp_delay}s"
        )
        paced = f"-every{self.garp_interval:g}s" if self.garp_interval else ""
        return f"v{self.version}-{self.advert_int:g}s{garp}{paced}"

    def __post_init__(self) -> None:
        if self.version not in (2, 3):
            raise TestbedError(f"VRRP version must be 2 or 3, not {self.version!r}")
        if self.version == 2 and self.advert_int != int(self.advert_int):
            raise TestbedError("VRRPv2 advert_int is whole seconds; use version 3 for sub-second")
        if not 0.01 <= self.advert_int <= 255:
            raise TestbedError(f"advert_int {self.advert_int!r} is not in 0.01..255 s")
        if not all(1 <= p <= 254 for p in self.priorities):
            raise TestbedError(f"priorities {self.priorities!r} must be in 1..254")


def config_block(head: str, lines: list[str], indent: int = 0) -> list[str]:
    """``head { lines }``: one block of keepalived.conf."""
    pad = " " * indent
    return [f"{pad}{head} {{", *(f"{pad}    {line}" for line in lines), f"{pad}}}"]


def render(
    spec: ClusterSpec,
    director: TwoLegged,
    *,
    vrrp: Vrrp | None = None,
    virtual_server: Sequence[str] = (),
    notify: str = "",
) -> str:
    """keepalived.conf for one director: a VRRP instance and/or a virtual_server block."""
    d = director.name
    index = [x.name for x in spec.directors].index(d)
    glob = [f"router_id {d}", "script_user root"]
    out: list[str] = []
    if vrrp is not None:
        glob += [
            f"vrrp_version {vrrp.version}",
            f"vrrp_garp_master_repeat {vrrp.garp_repeat}",
            f"vrrp_garp_master_delay {vrrp.garp_delay}",
        ]
        if vrrp.garp_interval:  # keepalived rejects 0, its default
            glob.append(f"vrrp_garp_interval {vrrp.garp_interval:g}")
        if vrrp.sync_daemon:
            glob.append(f"lvs_sync_daemon {d}-eth1 {INSTANCE} id {vrrp.sync_id}")
        # nopreempt needs every instance to start as BACKUP (keepalived.conf(5))
        state = "MASTER" if index == 0 and vrrp.preempt else "BACKUP"
        inst = [
            f"state {state}",
            f"interface {d}-eth0",
            f"virtual_router_id {vrrp.router_id}",
            f"priority {vrrp.priorities[index]}",
            f"advert_int {vrrp.advert_int:g}",
        ]
        if not vrrp.preempt:
            inst.append("nopreempt")
        addresses = spec.service_addresses(d)
        inst += config_block("virtual_ipaddress", [f"{a} dev {i}" for a, i in addresses])
        if notify:
            inst.append(f'notify "{notify}"')
        out += config_block(f"vrrp_instance {INSTANCE}", inst)
    out += virtual_server
    return "\n".join([*config_block("global_defs", glob), *out, ""])


NOTIFY_SCRIPT = """#!/bin/sh
# keepalived notify: <type> <name> <state> <priority>; one timestamped line each
echo "$(date +%s.%N) $3" >> "{log}"
"""


@dataclass(kw_only=True)
class Keepalived:
    """One keepalived daemon in one Mininet host, with private files under ``workdir``."""

    host: Any  # the Mininet node
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    generation: int = 0  # one state log per start
    _logfile: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return str(self.host.name)

    def path(self, what: str) -> Path:
        return self.workdir / f"{self.name}.{what}"

    def notify_script(self) -> str:
        """A notify script for the next start, logging to a file of that start only
        (a script forked by the previous daemon may still be running late)."""
        self.generation += 1
        script = self.path("notify.sh")
        script.write_text(NOTIFY_SCRIPT.format(log=self._states()))
        script.chmod(0o755)
        return str(script)

    def start(self, config: str) -> None:
        """Start with ``config``; the state log starts empty."""
        if self.proc is not None and self.proc.poll() is None:
            raise TestbedError(f"keepalived already runs on {self.name}")
        self.path("conf").write_text(config)
        self._states().write_text("")
        self._logfile = open(self.path("log"), "ab")  # noqa: SIM115 - closed in stop()
        cmd = [
            "keepalived", "--dont-fork", "--log-console", "--log-detail", "--no-syslog",
            "-f", str(self.path("conf")),
            "-p", str(self.path("pid")),
            "-r", str(self.path("vrrp.pid")),
            "-c", str(self.path("checkers.pid")),
        ]  # fmt: skip
        self.proc = self.host.popen(cmd, stdout=self._logfile, stderr=subprocess.STDOUT)

    def reload(self, config: str) -> None:
        """A new configuration, read by the running daemon on SIGHUP (keepalived(8))."""
        if not self.running:
            raise TestbedError(f"keepalived does not run on {self.name}")
        self.path("conf").write_text(config)
        self.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]

    def _states(self) -> Path:
        return self.path(f"states.{self.generation}")

    def pids(self) -> list[int]:
        """The parent and its VRRP and checker children."""
        pids = [self.proc.pid] if self.proc is not None else []
        for child in ("vrrp.pid", "checkers.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int(self.path(child).read_text().strip()))
        return pids

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Clean stop (SIGTERM): keepalived drops the VIPs and sends priority 0."""
        if self.running:
            self.proc.terminate()  # type: ignore[union-attr]
            try:
                self.proc.wait(15)  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap()

    def kill(self) -> None:
        """A crash: every process stopped, then SIGKILLed; nothing is cleaned up."""
        crash(self.pids())
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        for child in ("vrrp.pid", "checkers.pid", "pid"):
            self.path(child).unlink(missing_ok=True)
        if self._logfile is not None:
            self._logfile.close()
            self._logfile = None

    def states(self) -> list[tuple[float, str]]:
        """(time, state) for every VRRP transition, from the notify script."""
        out = []
        with contextlib.suppress(FileNotFoundError):
            for line in self._states().read_text().splitlines():
                when, _, state = line.partition(" ")
                out.append((float(when), state.strip()))
        return out

    @property
    def state(self) -> str:
        states = self.states()
        return states[-1][1] if states else "INIT"

    def wait_state(self, state: str, *, timeout: float, after: float = 0.0) -> float:
        """Time of the first transition to ``state`` after ``after``; raise on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for when, s in self.states():
                if s == state and when >= after:
                    return when
            time.sleep(0.05)
        raise AssertionError(
            f"keepalived on {self.name} did not reach {state} within {timeout:g} s "
            f"(states: {self.states()})\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 60) -> str:
        return tail_file(self.path("log"), f"keepalived log, {self.name}", lines)

    def log_lines(self) -> list[tuple[float, str]]:
        """(time, message) of this start's log, to the second."""
        try:
            return parse_log(self.path("log").read_text(errors="replace"))
        except FileNotFoundError:
            return []
