"""Process hygiene shared by the load tools."""

from __future__ import annotations

import ctypes
import resource
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies.

    A worker must not outlive a coordinator that was killed outright
    (SIGKILL runs no handler that could stop it).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one; return it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def mark_ready(path: str | None) -> None:
    """Write the ready file the testbed waits for (all ports listen)."""
    if path:
        with open(path, "w") as f:
            f.write("ready\n")
