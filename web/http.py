"""The web process's HTTP protocol: uvicorn's httptools protocol, each response in one write.

uvicorn writes a response's head (status line and headers) and its body separately: two
system calls, and on a local network two packets the client must read. :class:`HeldHead`
holds the head back until the body comes, which for a complete response is in the same
turn of the event loop, and writes the two together; a head whose body has not come by
the end of the turn (a stream's, a WebSocket handshake's) is written then on its own.

bench/queue_ops.py, 64 clients, four alternating pairs of runs: 4,580 operations/s on
average with uvicorn's protocol, 5,110 with this one (web CPU per operation 0.22 → 0.19
ms; the client's 0.047 → 0.040 ms). Run it as uvicorn's
``--http madoguchi.web.http:HttpToolsProtocol`` (the Procfile and ``madoguchi serve`` do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as UvicornHttpToolsProtocol

#: What the Procfile, ``madoguchi serve`` and the benchmarks pass to uvicorn's ``--http``.
PROTOCOL = "madoguchi.web.http:HttpToolsProtocol"


class HeldHead:
    """A transport that holds a response's head back for its body, until the turn ends.

    Everything but writing and closing is the wrapped transport's own.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif data[:5] == b"HTTP/":
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(lines))

    def flush(self) -> None:
        """Write a head still held (the end of the turn, or before closing)."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpToolsProtocol(UvicornHttpToolsProtocol):
    """uvicorn's httptools protocol, writing through :class:`HeldHead`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn's signature
        # HeldHead is a transport in everything uvicorn (and a WebSocket upgrade) does with it.
        super().connection_made(HeldHead(transport, self.loop))  # type: ignore[arg-type]
