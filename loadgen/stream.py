"""Long-lived connections for failover tests: a byte-exact stream, a silent hold, a load agent.

Run inside a real server's namespace::

    python -m loadgen.stream --stream-port 9000 --hold-port 9001 --agent-port 9100

- stream port: on accept the server sends ``pattern(offset, n)`` bytes, one
  chunk every interval, until the client closes. The pattern is a sequence of
  8-byte big-endian counters, so a lost, repeated or reordered byte shows up
  at the exact offset where the client's check fails.
- hold port: the server sends nothing until the client does, then echoes.
  A connection that only did the handshake has sent the director two packets
  (SYN, ACK): the sync daemon's control group.
- agent port: answers one line, the number of open stream and hold
  connections, then closes (the load a feedback checker turns into a weight).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct

from loadgen._proc import mark_ready, raise_fd_limit


def pattern(offset: int, n: int) -> bytes:
    """Bytes ``offset .. offset+n`` of the endless counter stream."""
    first, last = offset // 8, (offset + n + 7) // 8
    block = b"".join(struct.pack(">Q", i) for i in range(first, last))
    start = offset - first * 8
    return block[start : start + n]


class _Load:
    open = 0


async def _stream(writer: asyncio.StreamWriter, chunk: int, interval: float) -> None:
    offset = 0
    while True:
        writer.write(pattern(offset, chunk))
        offset += chunk
        await writer.drain()
        await asyncio.sleep(interval)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(4096):
        writer.write(data)
        await writer.drain()


def _handler(kind: str, chunk: int, interval: float):  # type: ignore[no-untyped-def]
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _Load.open += 1
        try:
            if kind == "stream":
                # read (and ignore) client bytes so a close is noticed
                drain = asyncio.ensure_future(reader.read())
                sender = asyncio.ensure_future(_stream(writer, chunk, interval))
                await asyncio.wait({drain, sender}, return_when=asyncio.FIRST_COMPLETED)
                for task in (drain, sender):
                    task.cancel()
            else:
                await _echo(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            _Load.open -= 1
            writer.close()

    return handle


async def _agent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(f"{_Load.open}\n".encode())
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    writer.close()


async def _main(args: argparse.Namespace) -> None:
    servers = []
    for port, handler in (
        (args.stream_port, _handler("stream", args.chunk, args.interval)),
        (args.hold_port, _handler("hold", 0, 0)),
        (args.agent_port, _agent),
    ):
        # one socket for both families where the host has IPv6 (IPv4 as mapped addresses)
        both = socket.has_dualstack_ipv6()
        sock = socket.create_server(("::" if both else "0.0.0.0", port), backlog=4096,
                                    reuse_port=True, family=socket.AF_INET6 if both
                                    else socket.AF_INET, dualstack_ipv6=both)  # fmt: skip
        servers.append(await asyncio.start_server(handler, sock=sock))
    mark_ready(args.ready_file)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stream-port", type=int, default=9000)
    parser.add_argument("--hold-port", type=int, default=9001)
    parser.add_argument("--agent-port", type=int, default=9100)
    parser.add_argument("--chunk", type=int, default=512, help="bytes per stream write")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between writes")
    parser.add_argument("--ready-file", help="written once all ports listen")
    args = parser.parse_args()
    raise_fd_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
