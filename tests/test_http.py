"""The web process's HTTP protocol: a response's head and body go out in one write."""

from __future__ import annotations

import asyncio
import socket

import httpx

from madoguchi.settings import Settings
from madoguchi.web.app import create_app
from madoguchi.web.http import HeldHead

from conftest import serving


class Recording(asyncio.Transport):
    """A transport that keeps what is written to it, and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


async def test_a_head_and_its_body_go_out_together() -> None:
    real = Recording()
    held = HeldHead(real, asyncio.get_running_loop())
    held.write(HEAD)
    assert real.writes == []
    held.write(b"{}")
    assert real.writes == [HEAD + b"{}"]
    await asyncio.sleep(0)  # the end of the turn has nothing left to write
    assert real.writes == [HEAD + b"{}"]


async def test_a_head_whose_body_is_late_goes_out_at_the_end_of_the_turn() -> None:
    real = Recording()
    held = HeldHead(real, asyncio.get_running_loop())
    held.write(HEAD)
    await asyncio.sleep(0)
    assert real.writes == [HEAD]
    held.write(b"data: 1\n\n")  # a stream's first event, later
    assert real.writes == [HEAD, b"data: 1\n\n"]


async def test_closing_writes_a_held_head_first_and_aborting_drops_it() -> None:
    loop = asyncio.get_running_loop()
    real = Recording()
    held = HeldHead(real, loop)
    held.write(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    held.close()
    assert real.writes == [b"HTTP/1.1 101 Switching Protocols\r\n\r\n"]
    assert real.closed
    dropped = Recording()
    held = HeldHead(dropped, loop)
    held.write(HEAD)
    held.abort()
    await asyncio.sleep(0)
    assert dropped.writes == []
    assert dropped.aborted


async def test_anything_but_a_head_is_written_at_once_and_the_rest_is_the_transports() -> None:
    real = Recording()
    held = HeldHead(real, asyncio.get_running_loop())
    held.write(b"\x81\x02hi")  # a WebSocket frame
    held.writelines([b"a", b"b"])
    assert real.writes == [b"\x81\x02hi", b"ab"]
    assert held.get_extra_info("peername") == ("127.0.0.1", 1)
    assert not held.is_closing()


def test_responses_and_streams_come_whole_over_a_real_connection(settings: Settings) -> None:
    with serving(create_app(settings)) as port:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(20):  # one keep-alive connection
                response = http.get("/livez")
                assert response.status_code == 200
            assert http.get("/api/v1/offices/nowhere").status_code == 404
        # A stream: its head is written although no event has come yet.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"GET /live HTTP/1.1\r\nHost: localhost\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = raw.recv(4096)
                assert chunk, "the connection closed before the stream's head"
                head += chunk
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"text/event-stream" in head
