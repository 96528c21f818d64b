"""Live ticket views for the phones a web process serves, computed once per ticket.

Every phone that watches a ticket holds an SSE connection. Rather than work out each
connection's view, the process keeps one :class:`TicketFeed` per watched ticket,
shared by all the connections that show it (a resident may have two tabs open), and
one follower task per office that has any. On each batch of the office's events the
follower reads the office once (one snapshot gives every waiting ticket's place in
line), works out every watched ticket's view from it, and, only where a view changed,
encodes it once as a server-sent event and writes it to the ticket's connections
itself (:class:`~..live.Broadcast`): no task per connection is woken, and a ticket
whose place and estimate are the ones it had costs two comparisons and allocates
nothing. When the estimates catch up with the events (simulating a long queue takes
a while), only the estimates are looked at again, from the places already read; and
events at a counter (a ticket starts, finishes, …), which move nobody in line, read
again only the ticket they name. A wait that only moved by a minute or two is sent at
most every :data:`ESTIMATE_SECONDS`, with the next change of place otherwise.

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
from dataclasses import dataclass

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ...queue.exceptions import NotFound, QueueError
from ...queue.model import Estimate, Snapshot, Ticket, TicketStatus
from ...queue.tickets import QueueClient
from ...queue.waits import Board, WaitBoard
from ..live import SSE_HEADERS, Broadcast, Dropped, Event, EventHub
from .view import TicketView, counter_names, only_the_wait_moved, positions, view_of

log = logging.getLogger(__name__)

#: Seconds between recomputations of an office's views when nothing happens (waits
#: drift as counters work) and between keep-alive comments on a quiet stream.
QUIET_SECONDS = 20.0
#: How long a phone waits before reconnecting a dropped stream, in milliseconds.
RETRY_MS = 3000
#: Longest a refresh waits for the wait board before going on with the latest one.
BOARD_WAIT = 0.05
#: Least seconds between two views of a ticket that differ only by a little in the wait
#: (the simulation's estimates move by a minute here and there each time it runs; a
#: phone is not woken for that every second). Its place in line, its call, and a wait
#: that moved by much are sent at once, with the wait as it is then.
ESTIMATE_SECONDS = 30.0
#: Events about a ticket held at a counter, which move nobody in line: a batch of only
#: these reads again the tickets they name, not the whole office.
AT_COUNTER = frozenset({"started", "finished", "no_show", "recalled"})
KEEP_ALIVE = b": keep-alive\n\n"


def order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = (stream_id or "0-0").partition("-")
    return int(ms or 0), int(seq or 0)


def sse(data: str, *, id: str = "", event: str = "") -> str:
    """One server-sent event; ``data`` must be a single line (compact JSON is)."""
    head = (f"id: {id}\n" if id else "") + (f"event: {event}\n" if event else "")
    return f"{head}data: {data}\n\n"


class TicketFeed:
    """One ticket's latest view in this process, written to every connection showing it."""

    __slots__ = (
        "estimate",
        "office",
        "place",
        "sent",
        "state",
        "stream",
        "ticket",
        "version",
        "watchers",
        "written",
    )

    def __init__(self, office: str, ticket: Ticket) -> None:
        self.office = office
        self.ticket = ticket
        #: The view's fields (:attr:`TicketView.state`), to tell a new view from the last.
        self.state: tuple[str | int | None, ...] = ()
        #: The stream id the view reflects.
        self.version = ""
        self.watchers = 0
        #: The ticket's connections; its ``full`` is the view as a server-sent event.
        self.stream = Broadcast()
        #: The place in line and the estimate the view was worked out from (0 and none
        #: when it was not), so that a ticket for which neither changed is skipped.
        self.place = 0
        self.estimate: Estimate | None = None
        #: When the view was last sent, and when anything was last written (a keep-alive
        #: too), by the event loop's clock.
        self.sent = 0.0
        self.written = 0.0

    @property
    def ready(self) -> bool:
        return bool(self.state)

    @property
    def message(self) -> bytes:
        """The view as a server-sent event, encoded once for every connection."""
        return self.stream.full

    @property
    def closed(self) -> bool:
        """The ticket is closed: its view is the last, and it ends every stream."""
        return self.stream.ended

    def update(self, view: TicketView, version: str, now: float) -> bool:
        """Take ``view`` as of stream id ``version``, and write it to every connection if
        it differs from the last (by more than a wait that moved a little, lately: see
        :data:`ESTIMATE_SECONDS`); whether it did."""
        state = view.state
        if state == self.state:
            return False
        if now - self.sent < ESTIMATE_SECONDS and only_the_wait_moved(self.state, state):
            return False
        self.state = state
        self.version = version
        self.sent = self.written = now
        message = sse(view.encode(), id=version).encode()
        self.stream.publish(message, message, last=view.closed)
        return True

    def keep_alive(self, now: float) -> None:
        """A comment to connections not written to for a while (proxies drop idle ones)."""
        if now - self.written >= QUIET_SECONDS:
            self.written = now
            self.stream.ping(KEEP_ALIVE)


@dataclass(frozen=True)
class Lines:
    """What one snapshot of an office says about the tickets in it."""

    #: The office's latest event that the snapshot reflects.
    version: str
    #: Every waiting ticket's place in its line, by ticket id.
    places: dict[str, int]
    #: The tickets held at counters (called or being served), by ticket id.
    held: dict[str, Ticket]
    #: Counter names by counter id.
    names: dict[str, str]

    @classmethod
    def of(cls, snapshot: Snapshot) -> Lines:
        return cls(
            snapshot.last_event,
            positions(snapshot),
            {t.id: t for t in snapshot.held.values()},
            counter_names(snapshot),
        )


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
        #: The office's lines as of its latest refresh, and the board its views are from.
        self._lines: dict[str, Lines] = {}
        self._used: dict[str, Board | None] = {}

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
            if not feed.ready:
                # Before the follower's first round. (The follower listens before it
                # reads, so nothing after the caller's read of the ticket is missed.)
                board = await self._board(office, version, wait=None)
                names = counter_names(board.snapshot) if board is not None else {}
                view = view_of(
                    ticket,
                    estimate=_estimate(board, ticket),
                    counter_name=names.get(ticket.counter or "", ""),
                )
                feed.update(view, version, _now())
            yield feed
        finally:
            feed.watchers -= 1
            if feed.watchers <= 0 and feeds.get(ticket.id) is feed:
                del feeds[ticket.id]
                if not feeds:
                    self._lines.pop(office, None)
                    self._used.pop(office, None)

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
        for feeds in self._feeds.values():
            for feed in feeds.values():
                feed.stream.close()

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
                        if all(e.type in AT_COUNTER for e in batch):
                            await self.refresh_held(office, touched, batch[-1].id)
                        else:
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
            self._lines[office] = lines = Lines.of(snapshot)
            if board is None or board.snapshot.last_event != lines.version:
                self._come_back(office)
            return await self._update(office, feeds, board, lines, touched)

    async def refresh_held(self, office: str, touched: Collection[str], last: str) -> int:
        """After events that moved nobody in line (:data:`AT_COUNTER`): read again only
        the tickets they name; the places of the latest refresh stand. Returns how many
        views changed."""
        async with self._locks.setdefault(office, asyncio.Lock()):
            feeds = self._feeds.get(office)
            lines = self._lines.get(office)
            if not feeds:
                return 0
            if lines is not None:
                return await self._update_held(office, feeds, lines, touched, last)
        return await self.refresh(office, touched, last)  # no places read yet

    async def _update_held(
        self,
        office: str,
        feeds: dict[str, TicketFeed],
        lines: Lines,
        touched: Collection[str],
        last: str,
    ) -> int:
        board = await self._board(office, last)
        # (An event read late is older than the snapshot: the views stay as of that.)
        version = last if order(last) > order(lines.version) else lines.version
        held = {k: v for k, v in lines.held.items() if k not in touched}
        now = _now()
        changed = 0
        for ticket_id in touched:
            feed = feeds.get(ticket_id)
            if feed is None:
                continue
            feed.place, feed.estimate = 0, None
            view = await self._fresh_view(office, feed, board, lines)
            if feed.ticket.status in (TicketStatus.CALLED, TicketStatus.SERVING):
                held[ticket_id] = feed.ticket
            if view is not None:
                changed += feed.update(view, version, now)
        self._lines[office] = Lines(version, lines.places, held, lines.names)
        if board is None or board.snapshot.last_event != version:
            self._come_back(office)
        return changed

    async def reestimate(self, office: str) -> int:
        """Look at the estimates again, from the places of the latest refresh (those are
        still exact: any event since has a refresh of its own coming). Returns how many
        views changed."""
        if not self._feeds.get(office):
            return 0
        async with self._locks.setdefault(office, asyncio.Lock()):
            feeds = self._feeds.get(office)
            lines = self._lines.get(office)
            if not feeds or lines is None:
                return 0
            board = await self._board(office, lines.version)
            if board is None or board.snapshot.last_event != lines.version:
                self._come_back(office)
            if board is self._used.get(office):
                return 0  # not recomputed yet
            return await self._update(office, feeds, board, lines, (), read=False)

    async def _update(
        self,
        office: str,
        feeds: dict[str, TicketFeed],
        board: Board | None,
        lines: Lines,
        touched: Collection[str],
        *,
        read: bool = True,
    ) -> int:
        """Work out the views of ``feeds`` and write those that changed; ``read``: read
        again the tickets that are neither waiting nor held (else leave them be)."""
        now = _now()
        changed = 0
        for ticket_id, feed in list(feeds.items()):
            place = 0 if ticket_id in touched else lines.places.get(ticket_id, 0)
            view: TicketView | None = None
            if place:
                estimate = _estimate(board, feed.ticket)
                if place != feed.place or estimate is not feed.estimate:
                    # (Either may have changed and the view not: minutes are rounded.)
                    feed.place, feed.estimate = place, estimate
                    view = view_of(feed.ticket, position=place, estimate=estimate)
            else:
                # Not known to be waiting: worked out in full, again next time.
                feed.place, feed.estimate = 0, None
                if ticket_id in lines.held and ticket_id not in touched:
                    feed.ticket = ticket = lines.held[ticket_id]
                    view = view_of(ticket, counter_name=lines.names.get(ticket.counter or "", ""))
                elif read or ticket_id in touched:
                    view = await self._fresh_view(office, feed, board, lines)
            if view is not None and feed.update(view, lines.version, now):
                changed += 1
            else:
                feed.keep_alive(now)
        self._used[office] = board
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
        """Look at the estimates again shortly, for a board being recomputed."""
        if office in self._later:
            return
        delay = max(self.waits.interval, BOARD_WAIT) + BOARD_WAIT

        def again() -> None:
            del self._later[office]
            task = asyncio.create_task(self.reestimate(office))
            self._tasks.add(task)
            task.add_done_callback(self._settled)

        self._later[office] = asyncio.get_running_loop().call_later(delay, again)

    def _settled(self, task: asyncio.Task[int]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("ticket views not refreshed: %r", task.exception())

    async def _fresh_view(
        self, office: str, feed: TicketFeed, board: Board | None, lines: Lines
    ) -> TicketView | None:
        """The view from the ticket itself, read again (it changed, or left the lines);
        ``None``: what was last shown stands."""
        try:
            ticket = await self.queue.ticket(office, feed.ticket.id, now=self.waits.clock())
        except NotFound:
            # Closed long enough ago to have expired.
            return view_of(feed.ticket, position=0) if not feed.ready else None
        feed.ticket = ticket
        return view_of(
            ticket,
            estimate=_estimate(board, ticket),
            counter_name=lines.names.get(ticket.counter or "", ""),
        )


class TicketStream(Response):
    """A ticket's view as server-sent events, resuming after ``after`` (a stream id).

    The response's own task only waits for the client to leave: the ticket's feed
    writes every view to it (see :class:`TicketFeed`), and ends it once the ticket is
    closed.
    """

    def __init__(
        self, watch: TicketWatch, office: str, ticket: Ticket, version: str, after: str
    ) -> None:
        super().__init__(status_code=200)
        self.watch = watch
        self.office = office
        self.ticket = ticket
        #: The office's latest event before the ticket was read.
        self.version = version
        self.after = after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        retry = f"retry: {RETRY_MS}\n\n".encode()
        await send({"type": "http.response.body", "body": retry, "more_body": True})
        async with self.watch.watch(self.office, self.ticket, self.version) as feed:
            stream = feed.stream
            # A phone that has seen this view (or a later one) is not sent it again.
            seen = bool(self.after) and order(feed.version) <= order(self.after)
            sink = stream.attach(send, stream.version if seen else -1)
            try:
                # Ends when the client leaves, or once the feed has ended the response.
                await _disconnected(receive)
            finally:
                stream.detach(sink)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _now() -> float:
    return asyncio.get_running_loop().time()


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
