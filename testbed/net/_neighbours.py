"""A host's neighbour caches (ARP and NDP) over rtnetlink, from this process.

``ip neigh flush all`` costs a process per host, and the suite flushes every
host's caches at each reconfiguration: under emulation those processes added
minutes to a run. Here one raw rtnetlink socket per host, opened in the host's
namespace and kept, takes a dump and sends every deletion in one datagram
(rtnetlink(7), include/uapi/linux/neighbour.h)::

    with Neighbours(host_pid) as neighbours:
        neighbours.flush()             # what `ip neigh flush all` removes
"""

from __future__ import annotations

import errno
import itertools
import socket
import struct
from dataclasses import dataclass

from ..util import Scoped
from ._netns import run_in_netns

_NLMSG = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_NDMSG = struct.Struct("=BxxxiHBB")  # ndmsg: family, ifindex, state, flags, type
_RTATTR = struct.Struct("=HH")  # rtattr: length, type
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWNEIGH, _RTM_DELNEIGH, _RTM_GETNEIGH = 28, 29, 30
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_DUMP = 0x1, 0x4, 0x300
_NDA_DST = 1
# ip-neighbour(8): flush leaves permanent and noarp entries alone
_KEPT_STATES = 0x80 | 0x40  # NUD_PERMANENT | NUD_NOARP
_FAMILIES = (socket.AF_INET, socket.AF_INET6)


@dataclass(frozen=True)
class Entry:
    """One neighbour cache entry, as deleting it names it."""

    family: int
    ifindex: int
    dst: bytes  # the neighbour's address, packed
    state: int


def _align(n: int) -> int:
    return (n + 3) & ~3


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _NLMSG.pack(_NLMSG.size + len(body), kind, flags, seq, 0) + body


def _messages(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, sequence, body) of each netlink message in a datagram."""
    out, at = [], 0
    while at + _NLMSG.size <= len(data):
        length, kind, _flags, seq, _port = _NLMSG.unpack_from(data, at)
        if length < _NLMSG.size:
            break
        out.append((kind, seq, data[at + _NLMSG.size : at + length]))
        at += _align(length)
    return out


def parse_entry(body: bytes) -> Entry:
    """An RTM_NEWNEIGH message's body: ndmsg, then attributes (NDA_DST among them)."""
    family, ifindex, state, _flags, _type = _NDMSG.unpack_from(body)
    dst, at = b"", _NDMSG.size
    while at + _RTATTR.size <= len(body):
        length, kind = _RTATTR.unpack_from(body, at)
        if length < _RTATTR.size:
            break
        if kind == _NDA_DST:
            dst = body[at + _RTATTR.size : at + length]
        at += _align(length)
    return Entry(family, ifindex, dst, state)


def delete_request(entry: Entry, seq: int) -> bytes:
    """RTM_DELNEIGH for one entry, acknowledged."""
    attr = _RTATTR.pack(_RTATTR.size + len(entry.dst), _NDA_DST) + entry.dst
    body = _NDMSG.pack(entry.family, entry.ifindex, 0, 0, 0) + attr.ljust(_align(len(attr)), b"\0")
    return _message(_RTM_DELNEIGH, _NLM_F_REQUEST | _NLM_F_ACK, seq, body)


def flushed(entry: Entry) -> bool:
    """Whether ``ip neigh flush all`` removes it."""
    return entry.family in _FAMILIES and not entry.state & _KEPT_STATES


class Neighbours(Scoped):
    """The ARP and NDP caches of the network namespace of process ``pid``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._sock: socket.socket | None = None
        self._seq = itertools.count(1)

    def start(self) -> None:
        # a socket stays in the namespace it was made in: make it there, use it here
        self._sock = run_in_netns(
            self.pid, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
        )  # NETLINK_ROUTE
        self._sock.bind((0, 0))
        self._sock.settimeout(10)  # the kernel answers at once; never hang a run on it

    def entries(self) -> list[Entry]:
        """Every entry of both families' caches (a dump)."""
        sock = self._opened()
        seq = next(self._seq)
        sock.send(_message(_RTM_GETNEIGH, _NLM_F_REQUEST | _NLM_F_DUMP, seq,
                           _NDMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)))  # fmt: skip
        found = []
        while True:
            for kind, got, body in _messages(sock.recv(1 << 16)):
                if got != seq:
                    continue
                if kind == _NLMSG_DONE:
                    return found
                if kind == _NLMSG_ERROR:
                    raise OSError(-struct.unpack_from("=i", body)[0], "neighbour dump failed")
                if kind == _RTM_NEWNEIGH:
                    found.append(parse_entry(body))

    def flush(self) -> int:
        """Delete every entry but permanent and noarp ones, in both families, as
        ``ip neigh flush all`` does (all deletions in one datagram); the number deleted."""
        sock = self._opened()
        doomed = {next(self._seq): e for e in self.entries() if flushed(e)}
        if not doomed:
            return 0
        sock.send(b"".join(delete_request(e, seq) for seq, e in doomed.items()))
        deleted, pending = 0, set(doomed)
        while pending:
            for kind, seq, body in _messages(sock.recv(1 << 16)):
                if kind != _NLMSG_ERROR or seq not in pending:
                    continue
                pending.discard(seq)
                code = -struct.unpack_from("=i", body)[0]
                if code == 0:
                    deleted += 1
                elif code != errno.ENOENT:  # ENOENT: gone meanwhile (expired, or GC)
                    raise OSError(code, f"deleting neighbour {doomed[seq]} failed")
        return deleted

    def _opened(self) -> socket.socket:
        if self._sock is None:
            raise RuntimeError("Neighbours used outside its with block (or before start())")
        return self._sock

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
