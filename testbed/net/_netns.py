"""Entering a Mininet host's network namespace from a thread of this process.

setns(2) affects only the calling thread, and a socket stays in the
namespace it was created in: so a worker thread that entered a host's
namespace opens sockets as that host, without a process per connection.
"""

from __future__ import annotations

import ctypes
import os
import threading
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
