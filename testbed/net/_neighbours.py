"""A host's neighbour caches (ARP and NDP) over rtnetlink, from this process.

``ip neigh flush all`` costs a process per host, and the suite flushes every
host's caches at each reconfiguration: under emulation those processes added
minutes to a run. The same deletions over one cached rtnetlink socket per
host cost about a millisecond.

    with Neighbours(host_pid) as neighbours:
        neighbours.flush()             # what `ip neigh flush all` removes
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from ..util import Scoped

# ip-neighbour(8): flush leaves permanent and noarp entries alone
_KEPT_STATES = 0x80 | 0x40  # NUD_PERMANENT | NUD_NOARP
_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class Neighbours(Scoped):
    """The ARP and NDP caches of the network namespace of process ``pid``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._rtnl: Any = None

    def start(self) -> None:
        from pyroute2 import IPRoute

        self._rtnl = IPRoute(netns=f"/proc/{self.pid}/ns/net")

    def flush(self) -> int:
        """Delete every entry but permanent and noarp ones, in both families, as
        ``ip neigh flush all`` does; the number deleted."""
        from pyroute2.netlink.exceptions import NetlinkError

        deleted = 0
        for entry in self._rtnl.neigh("dump"):
            if entry["family"] not in _FAMILIES or entry["state"] & _KEPT_STATES:
                continue
            try:
                self._rtnl.neigh(
                    "del",
                    family=entry["family"],
                    ifindex=entry["ifindex"],
                    dst=entry.get_attr("NDA_DST"),
                )
            except NetlinkError as exc:  # gone meanwhile (expired, or the kernel's own GC)
                if exc.code != errno.ENOENT:
                    raise
            else:
                deleted += 1
        return deleted

    def stop(self) -> None:
        if self._rtnl is not None:
            self._rtnl.close()
            self._rtnl = None
