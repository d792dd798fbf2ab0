"""Entering a Mininet host's network namespace from a thread of this process.

setns(2) affects only the calling thread, and a socket stays in the
namespace it was created in: so a worker thread that entered a host's
namespace opens sockets as that host, without a process per connection.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(pid: int) -> None:
    """Move the calling thread into the network namespace of process ``pid``."""
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into netns of pid {pid}: {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in_netns(pid: int, fn: Any) -> Any:
    """Run fn() in a short-lived thread inside the netns of ``pid``."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            enter_netns(pid)
            box["result"] = fn()
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    t = threading.Thread(target=body, name=f"netns-{pid}")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def read_sysctls(pid: int, patterns: Iterable[str]) -> dict[str, str]:
    """path -> value of every file under /proc/sys matching a glob of ``patterns``, as
    the netns of ``pid`` shows them (/proc/sys/net follows the reading thread's netns).
    A file that cannot be read (a write-only one, one gone meanwhile) is left out."""

    def read() -> dict[str, str]:
        values = {}
        for pattern in patterns:
            for path in sorted(glob.glob(pattern)):
                with contextlib.suppress(OSError):
                    values[path] = Path(path).read_text().strip()
        return values

    return run_in_netns(pid, read)


def write_sysctls(pid: int, values: Mapping[str, str]) -> list[str]:
    """Write each path's value in the netns of ``pid``; the paths the kernel refused."""

    def write() -> list[str]:
        refused = []
        for path, value in values.items():
            try:
                Path(path).write_text(f"{value}\n")
            except OSError:
                refused.append(path)
        return refused

    return run_in_netns(pid, write)
