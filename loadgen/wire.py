"""What the real-server program and its clients say to each other, over every protocol.

The same bytes go over TCP, SCTP and UDP: a request is one HTTP/1.0 GET,
an answer one ``HTTP/1.0 200`` whose body is the answering real server's
name (curl can ask over TCP; ``loadgen.ask`` over any of them). Over UDP a
request is one datagram and the answer one datagram back, so the opening
packet of a UDP "connection" is recognisable by its payload.
"""

from __future__ import annotations

REQUEST = b"GET / HTTP/1.0\r\n\r\n"
ANSWER_START = b"HTTP/1.0 200"
HEADER_END = b"\r\n\r\n"
MAX_ANSWER = 4096  # an answer is a few hundred bytes


def answer(name: str) -> bytes:
    """The whole answer of real server ``name``."""
    body = name.encode()
    return (
        ANSWER_START + b" OK\r\nContent-Type: text/plain\r\n"
        + f"X-Real-Server: {name}\r\nContent-Length: {len(body)}\r\n".encode()
        + b"Connection: close" + HEADER_END + body
    )  # fmt: skip


def name_in(data: bytes) -> str:
    """The real server's name in an answer ("" if ``data`` is not a whole answer)."""
    head, sep, body = data.partition(HEADER_END)
    if not sep or not head.startswith(ANSWER_START):
        return ""
    return body.decode(errors="replace").strip()
