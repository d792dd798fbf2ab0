"""A real-server program: answers HTTP with its own name, on several ports.

Run inside a real server's namespace::

    python -m loadgen.server --name r1 --port 80 --port 8080

Every connection gets one ``HTTP/1.0 200`` response whose body is the
server's name (and an ``X-Real-Server`` header), then the server closes, so
each request a client makes is a new connection the director schedules.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import socket


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str) -> None:
    try:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            return
        body = name.encode()
        writer.write(
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
            + f"X-Real-Server: {name}\r\nContent-Length: {len(body)}\r\n".encode()
            + b"Connection: close\r\n\r\n"
            + body
        )
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _main(name: str, ports: list[int], ready: str | None) -> None:
    servers = []
    for port in ports:
        sock = socket.create_server(("0.0.0.0", port), backlog=4096, reuse_port=True)
        servers.append(await asyncio.start_server(lambda r, w: _serve(r, w, name), sock=sock))
    if ready:
        with open(ready, "w") as f:
            f.write("ready\n")
    await asyncio.gather(*(s.serve_forever() for s in servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, action="append", required=True)
    parser.add_argument("--ready-file", help="written once all ports listen")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.name, args.port, args.ready_file))


if __name__ == "__main__":
    main()
