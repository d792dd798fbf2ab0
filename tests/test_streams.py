"""StreamSet's own measurements, on loopback in this process's namespace."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from testbed.net import StreamSet


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    if os.geteuid() != 0:
        pytest.skip("entering a network namespace needs root")
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        yield srv


def test_segments_sent_counts_the_handshake_then_each_segment(listener: socket.socket) -> None:
    """A hold that only connected has sent SYN and ACK: the 2 packets a director counts;
    one byte more is the third (the sync test's control group rests on this count)."""
    with StreamSet(os.getpid()) as streams:
        (hold,) = streams.open("hold", 1, listener.getsockname())
        assert hold.segments_sent() == 2
        hold.sock.send(b"x")
        time.sleep(0.05)
        assert hold.segments_sent() == 3


def test_connections_leave_the_ports_to_avoid_alone(listener: socket.socket) -> None:
    """Source ports a director still has entries of are never used for new connections."""
    with StreamSet(os.getpid()) as streams:
        avoid = set(range(0, 65536, 2))  # half of them: most connections meet one
        opened = streams.open("hold", 16, listener.getsockname(), avoid=avoid)
        assert all(t.sport % 2 for t in opened)
