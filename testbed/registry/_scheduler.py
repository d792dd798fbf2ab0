"""IPVS schedulers and their flags (ipvsadm(8) -s and -b), declared once each.

The reference model of each scheduler lives in testbed.sched; this is what
the kernel and ipvsadm call them. ``twos`` exists only in newer kernels: a
test probes its module rather than trusting this list.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._registry import Registry

# include/uapi/linux/ip_vs.h: IP_VS_SVC_F_SCHED1 and _SCHED2, which sh and mh
# read as "-fallback" and "-port"
FLAG_BITS = {"fallback": 0x0008, "port": 0x0010}


@dataclass(frozen=True, kw_only=True)
class Scheduler:
    name: str  # ipvsadm -s
    title: str
    flags: tuple[str, ...] = ()  # ipvsadm -b flags it reads

    @property
    def module(self) -> str:
        return f"ip_vs_{self.name}"

    def flag_bits(self, flags: tuple[str, ...]) -> int:
        """The service flags word for ``flags`` (each "<scheduler>-<flag>")."""
        return sum(FLAG_BITS[f.split("-", 1)[1]] for f in flags)


SCHEDULERS: Registry[Scheduler] = Registry("scheduler")
for _name, _title, _flags in (
    ("rr", "round robin", ()),
    ("wrr", "weighted round robin", ()),
    ("lc", "least connection", ()),
    ("wlc", "weighted least connection", ()),
    ("sed", "shortest expected delay", ()),
    ("nq", "never queue", ()),
    ("fo", "weighted failover", ()),
    ("ovf", "weighted overflow", ()),
    ("lblc", "locality-based least connection", ()),
    ("lblcr", "locality-based least connection with replication", ()),
    ("dh", "destination hashing", ()),
    ("sh", "source hashing", ("fallback", "port")),
    ("mh", "maglev hashing", ("fallback", "port")),
    ("twos", "weighted random twos choice", ()),
):
    SCHEDULERS.register(
        Scheduler(name=_name, title=_title, flags=tuple(f"{_name}-{f}" for f in _flags))
    )

SCHED_FLAGS = tuple(f for s in SCHEDULERS.values() for f in s.flags)
