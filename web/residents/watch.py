"""Live ticket views for the phones a web process serves, computed once per ticket.

Every phone that watches a ticket holds an SSE connection. Rather than work out each
connection's view, the process keeps one :class:`TicketFeed` per watched ticket,
shared by all the connections that show it (a resident may have two tabs open), and
one follower task per office that has any. On each batch of the office's events the
follower reads the office once (the wait board's snapshot and estimates), works out
every watched ticket's view from it, and, only where a view changed, encodes it once
as a server-sent event that all of the ticket's connections then send as it is.

Event ids are stream ids: the id of a view is the id of the office's latest event it
reflects, so a phone that reconnects with ``Last-Event-ID`` is sent the current view
if anything changed since, and nothing if not. A view is the ticket's whole state, so
nothing is lost by skipping the views in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...queue.exceptions import NotFound, QueueError
from ...queue.model import Estimate, Snapshot, Ticket, TicketStatus
from ...queue.tickets import QueueClient
from ...queue.waits import Board, WaitBoard
from ..live import Dropped, Event, EventHub
from .view import TicketView, counter_names, positions, view_of

log = logging.getLogger(__name__)

#: Seconds between recomputations of an office's views when nothing happens (waits
#: drift as counters work) and between keep-alive comments on a quiet stream.
QUIET_SECONDS = 20.0
#: How long a phone waits before reconnecting a dropped stream, in milliseconds.
RETRY_MS = 3000
#: Longest a refresh waits for the wait board before going on with the latest one.
BOARD_WAIT = 0.05


def order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = (stream_id or "0-0").partition("-")
    return int(ms or 0), int(seq or 0)


def sse(data: str, *, id: str = "", event: str = "") -> str:
    """One server-sent event; ``data`` must be a single line (compact JSON is)."""
    head = (f"id: {id}\n" if id else "") + (f"event: {event}\n" if event else "")
    return f"{head}data: {data}\n\n"


class TicketFeed:
    """One ticket's latest view in this process, and the event that announces a new one."""

    def __init__(self, office: str, ticket: Ticket) -> None:
        self.office = office
        self.ticket = ticket
        self.view: TicketView | None = None
        #: The view as a server-sent event, encoded once for every connection.
        self.message = ""
        #: The stream id the view reflects, and a counter that changes with the view.
        self.version = ""
        self.serial = 0
        self.watchers = 0
        self.ready = asyncio.Event()
        self._changed = asyncio.Event()

    def update(self, view: TicketView, version: str) -> bool:
        """Take ``view`` as of stream id ``version``; whether it differs from the last."""
        if view == self.view:
            return False
        self.view = view
        self.version = version
        self.serial += 1
        self.message = sse(view.encode(), id=version)
        self.ready.set()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return True

    async def changed(self, seconds: float) -> bool:
        """Wait for the next view, at most ``seconds``; whether one came."""
        waiting = self._changed
        try:
            async with asyncio.timeout(seconds):
                await waiting.wait()
        except TimeoutError:
            return False
        return True


class TicketWatch:
    """The process's ticket feeds and the office followers that keep them current."""

    def __init__(self, hub: EventHub, queue: QueueClient, waits: WaitBoard) -> None:
        self.hub = hub
        self.queue = queue
        self.waits = waits
        self._feeds: dict[str, dict[str, TicketFeed]] = {}
        self._followers: dict[str, asyncio.Task[None]] = {}
        #: One refresh of an office at a time, so that an older read never wins.
        self._locks: dict[str, asyncio.Lock] = {}
        #: The latest wait board seen per office, and the follow-up refreshes planned.
        self._boards: dict[str, Board] = {}
        self._estimating: dict[str, asyncio.Future[Board]] = {}
        self._later: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[int]] = set()

    @contextlib.asynccontextmanager
    async def watch(self, office: str, ticket: Ticket, version: str) -> AsyncIterator[TicketFeed]:
        """The ticket's feed with its current view, for as long as the caller watches.

        ``ticket`` was read after the office's event ``version``: a new feed starts from it.
        """
        feeds = self._feeds.setdefault(office, {})
        feed = feeds.get(ticket.id)
        if feed is None:
            feeds[ticket.id] = feed = TicketFeed(office, ticket)
        feed.watchers += 1
        try:
            self._follow(office)
            if not feed.ready.is_set():
                # Before the follower's first round. (The follower listens before it
                # reads, so nothing after the caller's read of the ticket is missed.)
                board = await self._board(office, version, wait=None)
                names = counter_names(board.snapshot) if board is not None else {}
                view = view_of(
                    ticket,
                    estimate=_estimate(board, ticket),
                    counter_name=names.get(ticket.counter or "", ""),
                )
                feed.update(view, version)
            yield feed
        finally:
            feed.watchers -= 1
            if feed.watchers <= 0 and feeds.get(ticket.id) is feed:
                del feeds[ticket.id]

    def _follow(self, office: str) -> None:
        task = self._followers.get(office)
        if task is None or task.done():
            self._followers[office] = asyncio.create_task(
                self._follower(office), name=f"madoguchi-tickets-{office}"
            )

    async def stop(self) -> None:
        for handle in self._later.values():
            handle.cancel()
        for task in [*self._followers.values(), *self._tasks]:
            task.cancel()
        for task in [*self._followers.values(), *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._followers.clear()

    async def _follower(self, office: str) -> None:
        while self._feeds.get(office):
            try:
                async with self.hub.listen(office) as listener:
                    await self.refresh(office, (), "")
                    while self._feeds.get(office):
                        try:
                            async with asyncio.timeout(QUIET_SECONDS):
                                first = await listener.next()
                        except TimeoutError:
                            await self.refresh(office, (), "")
                            continue
                        batch = [first, *_drain(listener.queue)]
                        touched = {str(e.data.get("ticket", "")) for e in batch}
                        await self.refresh(office, touched, batch[-1].id)
            except Dropped:
                continue
            except (RedisConnectionError, RedisTimeoutError, OSError, QueueError) as exc:
                log.warning("office %s ticket views paused: %s", office, exc)
                await asyncio.sleep(1.0)
        self._followers.pop(office, None)

    async def refresh(self, office: str, touched: Collection[str], last: str) -> int:
        """Recompute the views of the office's watched tickets after event ``last`` (or
        now); ``touched``: tickets the events named, which are read again in full.
        Returns how many views changed.

        Places in line come from a snapshot read now, so they are exact; estimates from
        the wait board, which is recomputed at most so often (and simulating an office
        takes a while): a refresh never waits for it, but uses the latest board there
        is and comes back for the new one.
        """
        if not self._feeds.get(office):
            return 0
        async with self._locks.setdefault(office, asyncio.Lock()):
            feeds = self._feeds.get(office)
            if not feeds:
                return 0
            board = await self._board(office, last)
            snapshot = await self.queue.snapshot(office, now=self.waits.clock())
            if board is None or board.snapshot.last_event != snapshot.last_event:
                self._come_back(office)
            version = snapshot.last_event
            places = positions(snapshot)
            held = {t.id: t for t in snapshot.held.values()}
            names = counter_names(snapshot)
            changed = 0
            for ticket_id, feed in list(feeds.items()):
                if ticket_id in places and ticket_id not in touched:
                    ticket = feed.ticket
                    view = view_of(
                        ticket, position=places[ticket_id], estimate=_estimate(board, ticket)
                    )
                elif ticket_id in held and ticket_id not in touched:
                    feed.ticket = ticket = held[ticket_id]
                    view = view_of(ticket, counter_name=names.get(ticket.counter or "", ""))
                else:
                    view = await self._fresh_view(office, feed, board, snapshot)
                changed += feed.update(view, version)
            return changed

    async def _board(
        self, office: str, last: str, *, wait: float | None = BOARD_WAIT
    ) -> Board | None:
        """The office's wait board if it comes within ``wait`` seconds (``None``: however
        long it takes), else the latest one seen (or none)."""
        pending = self._estimating.get(office)
        if pending is None or pending.done():
            pending = self._estimating[office] = asyncio.ensure_future(
                self.waits.board(office, last)
            )
            pending.add_done_callback(_observed)
        try:
            async with asyncio.timeout(wait):
                board = await asyncio.shield(pending)
        except TimeoutError:
            return self._boards.get(office)
        self._boards[office] = board
        return board

    def _come_back(self, office: str) -> None:
        """Refresh again shortly, for the estimates of a board being recomputed."""
        if office in self._later:
            return
        delay = max(self.waits.interval, BOARD_WAIT) + BOARD_WAIT

        def again() -> None:
            del self._later[office]
            task = asyncio.create_task(self.refresh(office, (), ""))
            self._tasks.add(task)
            task.add_done_callback(self._settled)

        self._later[office] = asyncio.get_running_loop().call_later(delay, again)

    def _settled(self, task: asyncio.Task[int]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("ticket views not refreshed: %r", task.exception())

    async def _fresh_view(
        self, office: str, feed: TicketFeed, board: Board | None, snapshot: Snapshot
    ) -> TicketView:
        """The view from the ticket itself, read again (it changed, or left the lines)."""
        try:
            ticket = await self.queue.ticket(office, feed.ticket.id, now=self.waits.clock())
        except NotFound:
            # Closed long enough ago to have expired.
            return view_of(feed.ticket, position=0) if feed.view is None else feed.view
        feed.ticket = ticket
        names = counter_names(snapshot)
        return view_of(
            ticket,
            estimate=_estimate(board, ticket),
            counter_name=names.get(ticket.counter or "", ""),
        )


def _observed(future: asyncio.Future[Board]) -> None:
    # A board that failed after its refresh stopped waiting: the next refresh asks again.
    if not future.cancelled() and future.exception() is not None:
        log.warning("wait board not computed: %r", future.exception())


def _estimate(board: Board | None, ticket: Ticket) -> Estimate | None:
    """A waiting ticket's estimate on ``board``; one issued since stands where a new
    ticket of its service stood then."""
    if board is None or ticket.status is not TicketStatus.WAITING:
        return None
    return board.estimates.tickets.get(ticket.id) or board.estimates.new.get(ticket.service)


def _drain(queue: asyncio.Queue[Event | None]) -> list[Event]:
    """Every event already waiting (a burst is one refresh, not one each)."""
    found: list[Event] = []
    while True:
        try:
            event = queue.get_nowait()
        except asyncio.QueueEmpty:
            return found
        if event is None:
            raise Dropped("fell behind")
        found.append(event)
