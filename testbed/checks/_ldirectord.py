"""ldirectord, the classic LVS stack's health checker, behind the same interface.

ldirectord reads one config file, checks every real server in turn and
writes the IPVS table itself (ldirectord(8): checkinterval, checktimeout,
checktype connect/negotiate, quiescent, fallback).
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cluster import Cluster
from ..topology import ClusterSpec, RealServer
from ..util import TestbedError, tail_file
from ._checker import Checker, checker_owns_table

CHECKTYPES = ("negotiate", "connect")


@dataclass(frozen=True, kw_only=True)
class Ldirectord(Checker):
    """One ldirectord virtual service for the cluster's VIP (ldirectord(8))."""

    checktype: str = "negotiate"  # an HTTP GET whose body must match ``receive``
    checkinterval: int = 1
    checktimeout: int = 1
    quiescent: bool = False
    fallback: RealServer | None = None

    def __post_init__(self) -> None:
        if self.checktype not in CHECKTYPES:
            raise TestbedError(f"unsupported ldirectord checktype {self.checktype!r}")

    @property
    def name(self) -> str:
        return f"ldirectord-{self.checktype}"

    def removal_bound(self, failing: int = 1) -> float:
        """A failure just after a good check is seen one interval later, after the timeout.

        ldirectord (fork=no) checks real servers one after another, so each other
        server failing at the same time adds its checktimeout to the round.
        """
        return self.checkinterval + failing * self.checktimeout

    def recheck_bound(self) -> float:
        return self.checkinterval + self.checktimeout

    def render(self, spec: ClusterSpec, *, logfile: str) -> str:
        """ldirectord.cf serving ``spec``'s service and real servers."""
        s = spec.service
        port, kind = s.real_port, s.forwarding.ldirectord_kind
        names = [rs.name for rs in spec.real_servers]
        if self.fallback is not None:
            names.append(self.fallback.name)
        lines = [
            f"checktimeout={self.checktimeout}",
            f"checkinterval={self.checkinterval}",
            "autoreload=no",
            f'logfile="{logfile}"',
            f"quiescent={'yes' if self.quiescent else 'no'}",
            "cleanstop=yes",
            f"virtual={s.endpoint}",
        ]
        body = [f"real={rs.ip}:{port} {kind} {rs.weight}" for rs in spec.real_servers]
        if self.fallback is not None:
            body.append(f"fallback={self.fallback.ip}:{port} {kind}")
        body += [
            "service=http",
            'request="/"',
            # the real-server program answers with its name
            f'receive="^({"|".join(dict.fromkeys(names))})$"',
            f"scheduler={s.scheduler}",
            f"protocol={s.protocol}",
            f"checktype={self.checktype}",
        ]
        return "\n".join([*lines, *(f"\t{b}" for b in body), ""])

    @contextlib.contextmanager
    def serve(self, cluster: Cluster, **table: Any) -> Iterator[subprocess.Popen[bytes]]:
        """ldirectord alone (no heartbeat) owns the active director's IPVS table."""
        with checker_owns_table(cluster, **table) as spec:
            # ldirectord's pid file is named after its config file: one name per run
            workdir = Path(tempfile.mkdtemp(prefix="ldirectord-", dir=cluster.workdir))
            conf = workdir / f"{workdir.name}.cf"
            conf.write_text(self.render(spec, logfile=str(workdir / "log")))
            out = workdir / "out"
            describe = functools.partial(tail_file, out, "ldirectord output")
            with open(out, "wb") as log:
                # -d: stay in the foreground, so the process is ours to stop
                proc = cluster.node(spec.active.name).popen(
                    ["ldirectord", "-d", str(conf), "start"], stdout=log, stderr=subprocess.STDOUT
                )
            cluster.diagnostics.append(describe)
            try:
                yield proc
            finally:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
                cluster.diagnostics.remove(describe)
