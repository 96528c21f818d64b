"""Ticket receipts on a network ESC/POS printer, and the printer's state.

Where a branch has an ESC/POS receipt printer on its network, the web process prints
the kiosk's tickets on it with python-escpos. Receipt printers have no Japanese
fonts worth the name, so the text (office, number, service, time) is drawn with
Pillow in a CJK font found on the system (Noto Sans CJK, Debian's ``fonts-noto-cjk``)
into an image exactly as wide as the paper's printable dots (384 for 58 mm paper,
576 for 80 mm, at 203 dpi) and sent as a raster image (``GS v 0``); then the printer
draws the QR code of the ticket's phone page itself (``GS ( k``), feeds and cuts
(``GS V``). Before printing, the paper sensor is asked (``DLE EOT 4``): a printer out
of paper refuses the job instead of swallowing it.

The I/O blocks, so :func:`print_ticket` and :func:`printer_state` run it in a thread.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

from escpos.printer import Network
from PIL import Image, ImageDraw, ImageFont

from .devices import Kiosk, Printer

PrinterState = Literal["ok", "no_paper", "offline", "unknown"]
#: Printable dots across the paper, at 203 dpi.
DOTS = {58: 384, 80: 576}
#: Seconds to wait for the printer to connect or answer: when printing, and when asked
#: for its state (which a health report waits for).
TIMEOUT = 5.0
STATE_TIMEOUT = 2.0
#: Fonts tried first; then fontconfig is asked for any Japanese font.
FONT_CANDIDATES = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/noto-cjk/NotoSansCJK-Bold.ttc"),
    Path("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/truetype/fonts-japanese-gothic.ttf"),
)


class TicketView(Protocol):
    """What a receipt shows of a ticket (the kiosk screens' ticket view has these)."""

    @property
    def office(self) -> str: ...  # the office slug, for the QR code's URL
    @property
    def token(self) -> str: ...  # the resident's token, for the QR code's URL
    @property
    def number(self) -> str: ...  # e.g. "A-023"
    @property
    def office_name(self) -> str: ...
    @property
    def service_name(self) -> str: ...
    @property
    def issued(self) -> str: ...  # the time, already written for people, e.g. "11月26日 9:00"


@dataclass(frozen=True)
class Receipt:
    """A plain :class:`TicketView`."""

    office: str
    token: str
    number: str
    office_name: str
    service_name: str
    issued: str


class FontMissing(RuntimeError):
    """No font that can draw Japanese is installed."""


class PrintFailed(Exception):
    """The printer did not take the ticket; ``state`` says why (``no_paper``, ``offline``)."""

    def __init__(self, state: PrinterState, message: str) -> None:
        super().__init__(message)
        self.state = state


def ticket_url(base_url: str, ticket: TicketView) -> str:
    """The ticket's phone page, absolute: what the QR code holds."""
    return f"{base_url.rstrip('/')}/o/{ticket.office}/t/{ticket.token}"


@cache
def font_path() -> Path:
    """A font file that draws Japanese, or :class:`FontMissing` saying what to install."""
    for candidate in FONT_CANDIDATES:
        if candidate.is_file():
            return candidate
    fc_match = shutil.which("fc-match")
    if fc_match:
        found = subprocess.run(  # noqa: S603 (a fixed command, no user input)
            [fc_match, "-f", "%{file}", "sans:lang=ja"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        if found and Path(found).is_file() and _draws_japanese(Path(found)):
            return Path(found)
    raise FontMissing(
        "no font that can draw Japanese was found; install Noto Sans CJK "
        "(Debian: apt-get install fonts-noto-cjk)"
    )


def _draws_japanese(path: Path) -> bool:
    font = ImageFont.truetype(str(path), 24)
    return font.getmask("窓口").getbbox() is not None


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path()), size, index=0)


def _wrap(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int
) -> list[str]:
    """``text`` in lines no wider than ``width``, broken anywhere (Japanese has no spaces)."""
    lines, line = [], ""
    for char in text:
        if line and draw.textlength(line + char, font=font) > width:
            lines.append(line)
            line = ""
        line += char
    return [*lines, line] if line else lines


def receipt_image(ticket: TicketView, width_mm: Literal[58, 80]) -> Image.Image:
    """The receipt's text as a 1-bit image exactly as wide as the paper's printable dots."""
    width = DOTS[width_mm]
    scale = width / DOTS[80]
    margin = round(16 * scale)
    rows: list[tuple[str, ImageFont.FreeTypeFont]] = []
    scratch = ImageDraw.Draw(Image.new("1", (width, 10)))
    for text, size in (
        (ticket.office_name, 30),
        ("番号 / Number", 24),
        (ticket.number, 120),
        (ticket.service_name, 34),
        (ticket.issued, 26),
        ("呼ばれるまでお待ちください。", 24),
        ("QRコードで順番をスマホで見られます。", 22),
    ):
        font = _font(max(12, round(size * scale)))
        rows += [(line, font) for line in _wrap(scratch, text, font, width - 2 * margin)]
    gap = round(10 * scale)
    heights = [round(font.getbbox(line)[3]) + gap for line, font in rows]
    image = Image.new("1", (width, sum(heights) + 2 * margin), 1)
    draw = ImageDraw.Draw(image)
    y = float(margin)
    for (line, font), height in zip(rows, heights, strict=True):
        x = (width - draw.textlength(line, font=font)) / 2
        draw.text((x, y), line, font=font, fill=0)
        y += height
    return image


def _connect(printer: Printer, timeout: float = TIMEOUT) -> Network:
    if printer.kind != "escpos" or not printer.host:
        raise PrintFailed("offline", "this kiosk has no ESC/POS network printer")
    device = Network(printer.host, printer.port, timeout=timeout)
    # The generic profile does not know the paper: tell it, so images are checked against it.
    data: dict[str, Any] = dict(device.profile.profile_data)
    data["media"] = {
        "dpi": 203,
        "width": {"mm": printer.width_mm, "pixels": DOTS[printer.width_mm]},
    }
    device.profile.profile_data = data
    try:
        # Connected here rather than by ``Network.open``, which leaks the socket on failure.
        device.device = socket.create_connection((printer.host, printer.port), timeout=timeout)
    except OSError as exc:
        raise PrintFailed(
            "offline", f"the printer at {printer.host}:{printer.port} does not answer"
        ) from exc
    return device


def _paper(device: Network) -> PrinterState:
    try:
        status = device.paper_status()
    except OSError:
        return "unknown"
    return "no_paper" if status == 0 else "ok"


def _state(printer: Printer) -> PrinterState:
    try:
        device = _connect(printer, STATE_TIMEOUT)
    except PrintFailed as failed:
        return failed.state
    try:
        return _paper(device)
    finally:
        device.close()


def _print(printer: Printer, ticket: TicketView, url: str) -> None:
    device = _connect(printer)
    try:
        if _paper(device) == "no_paper":
            raise PrintFailed("no_paper", "the printer is out of paper")
        image = receipt_image(ticket, printer.width_mm)
        device.hw("INIT")
        device.image(image, impl="bitImageRaster")
        device.set(align="center")
        device.qr(url, size=8 if printer.width_mm == 80 else 6, native=True)
        device.cut()
    except OSError as exc:
        raise PrintFailed("offline", f"the printer stopped answering: {exc}") from exc
    finally:
        device.close()


async def print_ticket(kiosk: Kiosk, ticket_view: TicketView, base_url: str) -> None:
    """Print the ticket on the kiosk's ESC/POS printer; :class:`PrintFailed` if it cannot."""
    url = ticket_url(base_url, ticket_view)
    await asyncio.to_thread(_print, kiosk.printer, ticket_view, url)


async def printer_state(printer: Printer) -> PrinterState:
    """``ok``, ``no_paper`` (the paper sensor says so), ``offline``, or ``unknown``."""
    if printer.kind != "escpos":
        return "unknown"  # a browser's printer cannot be asked
    return await asyncio.to_thread(_state, printer)
