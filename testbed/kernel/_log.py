"""The kernel's own reports of its bugs, read from /dev/kmsg while the suite runs.

A conformance run must not pass while the kernel under test warns or oopses
behind its back: a WARN_ON in IPVS, a KASAN or lockdep report on a debug
kernel. Records are read from /dev/kmsg (one record per read(2):
"prio,seq,usec,flags;text", continuation lines indented; only facility 0,
the kernel's own: user space can write to /dev/kmsg too). Sources:
Documentation/ABI/testing/dev-kmsg, include/asm-generic/bug.h (WARNING:,
kernel BUG at), mm/kasan/report.c (BUG: KASAN:), kernel/locking/lockdep.c
(WARNING: possible ... locking ...), arch/x86/kernel/dumpstack.c (Oops:).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from dataclasses import dataclass

# the first line of every report the kernel prints about itself
_REPORT = re.compile(
    r"^(WARNING: |BUG: |kernel BUG at |Oops|general protection fault|UBSAN: |"
    r"Kernel panic - not syncing)"
)
KMSG = "/dev/kmsg"


@dataclass(frozen=True)
class KernelRecord:
    """One record of the kernel log."""

    facility: int
    level: int
    seq: int
    usec: int
    text: str  # the message, continuation lines joined with newlines


def parse_record(raw: str) -> KernelRecord | None:
    """A /dev/kmsg record ("prio,seq,usec,flags[,...];message\\n continuation...")."""
    head, sep, body = raw.partition(";")
    fields = head.split(",")
    if not sep or len(fields) < 3 or not all(f.isdigit() for f in fields[:3]):
        return None
    prio, seq, usec = (int(f) for f in fields[:3])
    lines = body.rstrip("\n").split("\n")
    text = "\n".join([lines[0], *(line[1:] for line in lines[1:] if line.startswith(" "))])
    return KernelRecord(facility=prio >> 3, level=prio & 7, seq=seq, usec=usec, text=text)


def bug_reports(records: list[KernelRecord], *, context: int = 30) -> list[str]:
    """Each kernel report (warning, BUG, oops, KASAN, lockdep) in ``records``: its
    first line and the kernel records after it (modules, registers, call trace), up
    to the next report, the end of its trace or ``context`` records."""
    kernel = [r for r in records if r.facility == 0]
    out = []
    for i, record in enumerate(kernel):
        if not _REPORT.match(record.text):
            continue
        lines = [record.text]
        for later in kernel[i + 1 : i + 1 + context]:
            if _REPORT.match(later.text):
                break
            lines.append(later.text)
            if later.text.startswith("---[ end"):
                break
        out.append("\n".join(lines))
    return out


class KernelLog:
    """The kernel log from now on: ``new()`` returns the records since the last call.

    >>> log = KernelLog()          # positioned at the end of the log
    >>> bug_reports(log.new())     # [] while the kernel is quiet; else each report
    []
    """

    def __init__(self, path: str = KMSG) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self._fd, 0, os.SEEK_END)

    def new(self) -> list[KernelRecord]:
        out = []
        while True:
            try:
                raw = os.read(self._fd, 16384)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno != errno.EPIPE:  # EPIPE: the ring overwrote unread records
                    raise
                continue  # the next read returns the oldest record still there
            if not raw:
                return out
            if (record := parse_record(raw.decode(errors="replace"))) is not None:
                out.append(record)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
