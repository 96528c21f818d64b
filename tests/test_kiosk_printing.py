"""Ticket receipts on an ESC/POS network printer: a local TCP server stands in for it.

The fake printer is an outside device, so a socket that keeps what it receives and
answers the paper-sensor query is fair; everything on our side is real (python-escpos,
Pillow with the system's CJK font, the thread the I/O runs in).
"""

from __future__ import annotations

import dataclasses
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from PIL import Image, ImageChops

from madoguchi.kiosk.devices import Kiosk, Printer
from madoguchi.kiosk.printing import (
    DOTS,
    PrintFailed,
    Receipt,
    print_ticket,
    printer_state,
    receipt_image,
    ticket_url,
)

PAPER_QUERY = b"\x10\x04\x04"  # DLE EOT 4: the paper sensor
PAPER_OK, PAPER_OUT = 0x12, 0x72
RECEIPT = Receipt(
    office="kokurakita",
    token="tok-" + "a" * 28,
    number="A-023",
    office_name="小倉北区役所",
    service_name="証明書（住民票・印鑑証明）",
    issued="11月26日 9:00",
)
BASE = "https://madoguchi.example.jp/"


@dataclass
class FakePrinter:
    """A TCP server that records every byte and answers the paper sensor with ``paper``."""

    paper: int = PAPER_OK
    received: bytearray = field(default_factory=bytearray)
    done: threading.Event = field(default_factory=threading.Event)

    def serve(self, listener: socket.socket) -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                while chunk := connection.recv(65536):
                    self.received += chunk
                    if chunk.endswith(PAPER_QUERY):
                        connection.sendall(bytes([self.paper]))
            self.done.set()


@contextmanager
def printer_on_the_network() -> Iterator[tuple[FakePrinter, int]]:
    """A :class:`FakePrinter` listening on a free local port, and the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    fake = FakePrinter()
    thread = threading.Thread(target=fake.serve, args=(listener,), daemon=True)
    thread.start()
    try:
        yield fake, listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() the thread waits in
        listener.close()
        thread.join(5)


@pytest.fixture
def fake_printer() -> Iterator[tuple[FakePrinter, int]]:
    with printer_on_the_network() as running:
        yield running


def kiosk_with(port: int, width: int = 80, host: str = "127.0.0.1") -> Kiosk:
    printer = Printer("escpos", host, port, width)  # type: ignore[arg-type]
    return Kiosk("k", "kokurakita", "小倉北 — 足原", "1F", ("certs",), (), ("face",), printer)


def raster_images(data: bytes) -> list[tuple[int, int]]:
    """(width in dots, height) of every ``GS v 0`` raster image in the byte stream."""
    found = []
    for match in re.finditer(rb"\x1dv0(.)(..)(..)", data, re.DOTALL):
        width_bytes = int.from_bytes(match.group(2), "little")
        found.append((width_bytes * 8, int.from_bytes(match.group(3), "little")))
    return found


@pytest.mark.parametrize("width", [58, 80])
async def test_a_ticket_prints_as_an_image_with_a_qr_code_and_a_cut(
    fake_printer: tuple[FakePrinter, int], width: int
) -> None:
    fake, port = fake_printer
    await print_ticket(kiosk_with(port, width), RECEIPT, BASE)
    assert fake.done.wait(5)
    data = bytes(fake.received)
    assert data.startswith(PAPER_QUERY)  # the paper is checked before anything is printed
    assert b"\x1b@" in data  # ESC @: initialise
    images = raster_images(data)
    assert images, "no raster image (GS v 0) was sent"
    assert {w for w, _ in images} == {DOTS[width]}  # exactly the paper's printable width
    assert sum(h for _, h in images) > 200
    url = f"https://madoguchi.example.jp/o/kokurakita/t/{RECEIPT.token}"
    # GS ( k pL pH 1 P 0 <data>: store the QR code's data; GS ( k 3 0 1 Q 0: print it
    assert b"\x1d(k" + (len(url) + 3).to_bytes(2, "little") + b"1P0" + url.encode() in data
    printed_at = data.index(b"\x1d(k\x03\x001Q0")
    assert printed_at > data.index(b"\x1dv0")  # the QR code comes under the text
    assert re.search(rb"\x1dV[\x00\x01AB]", data[printed_at:])  # GS V: the cut, last


def _ink(image: Image.Image) -> tuple[int, int, int, int] | None:
    """The box around the black dots of a 1-bit receipt image."""
    return ImageChops.invert(image.convert("L")).getbbox()


def test_the_receipt_image_holds_the_text_at_the_paper_width() -> None:
    for width in (58, 80):
        image = receipt_image(RECEIPT, width)  # type: ignore[arg-type]
        assert image.width == DOTS[width]
        assert image.mode == "1"
        ink = _ink(image)
        assert ink is not None
        assert ink[3] - ink[1] > 200


def test_japanese_is_drawn_not_left_as_boxes() -> None:
    """Two different kanji give two different images: a font without them would draw the
    same "missing glyph" box for both."""
    one = receipt_image(dataclasses.replace(RECEIPT, service_name="介護"), 80)
    other = receipt_image(dataclasses.replace(RECEIPT, service_name="税金"), 80)
    assert one.size == other.size
    assert ImageChops.difference(one.convert("L"), other.convert("L")).getbbox() is not None


def test_a_long_service_name_wraps_instead_of_being_cut() -> None:
    short = receipt_image(RECEIPT, 58)
    long = receipt_image(
        dataclasses.replace(RECEIPT, service_name="介護保険（要介護認定の申請・更新・区分変更）"),
        58,
    )
    assert long.width == short.width
    assert long.height > short.height


async def test_a_printer_out_of_paper_refuses_the_ticket(
    fake_printer: tuple[FakePrinter, int],
) -> None:
    fake, port = fake_printer
    fake.paper = PAPER_OUT
    with pytest.raises(PrintFailed) as failed:
        await print_ticket(kiosk_with(port), RECEIPT, BASE)
    assert failed.value.state == "no_paper"
    assert fake.done.wait(5)
    assert b"\x1dv0" not in fake.received  # nothing was printed into the void


async def test_printer_state(fake_printer: tuple[FakePrinter, int]) -> None:
    fake, port = fake_printer
    assert await printer_state(kiosk_with(port).printer) == "ok"
    fake.paper = PAPER_OUT
    assert await printer_state(kiosk_with(port).printer) == "no_paper"


async def test_a_printer_that_does_not_answer_is_offline() -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    assert await printer_state(kiosk_with(port).printer) == "offline"
    with pytest.raises(PrintFailed) as failed:
        await print_ticket(kiosk_with(port), RECEIPT, BASE)
    assert failed.value.state == "offline"


async def test_a_browser_printer_cannot_be_asked() -> None:
    assert await printer_state(Printer("browser")) == "unknown"


def test_ticket_url_is_absolute() -> None:
    assert ticket_url("http://kiosk.local:8000", RECEIPT) == (
        f"http://kiosk.local:8000/o/kokurakita/t/{RECEIPT.token}"
    )
