"""Replaying office-day traces through the real queue, and scoring the estimates."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis

from madoguchi.queue import keys
from madoguchi.queue.estimator import Estimates, Estimator
from madoguchi.queue.model import CounterState, Estimate, Snapshot
from madoguchi.queue.replay import (
    PREFIXES,
    Arrival,
    Outcome,
    ReplayError,
    Row,
    Trace,
    TraceError,
    band,
    load_trace,
    main,
    parse_trace,
    percentile,
    replay,
    score,
    score_baseline,
)
from madoguchi.queue.tickets import QueueClient
from madoguchi.settings import Settings

DATA = Path(__file__).parent / "data"
SAMPLES = sorted(DATA.glob("sample-*.jsonl"))
LINES = ("appt", "priority", "regular")


class LineEstimator(Estimator):
    """Stand-in: the baseline formula, with ``ahead`` = place in the ticket's own line."""

    def estimate(self, snapshot: Snapshot) -> Estimates:
        result = Estimates()
        for sid, line in snapshot.lines.items():
            order = [tid for kind in LINES for tid, _ in line.get(kind, [])]
            servers = sum(
                1 for c in snapshot.counters if c.state is CounterState.OPEN and sid in c.services
            )
            history = snapshot.history.get(sid) or []
            mean = (
                sum(history) / len(history) if history else snapshot.services[sid].default_seconds
            )
            for ahead, tid in enumerate(order):
                wait = (ahead + 1) * mean / max(servers, 1)
                result.tickets[tid] = Estimate(wait, wait / 2, wait * 2, ahead, servers)
        return result


class Forgetful(Estimator):
    def estimate(self, snapshot: Snapshot) -> Estimates:
        return Estimates()


def office(services: tuple[str, ...] = ("certs", "moving")) -> dict[str, Any]:
    return {
        "kind": "office",
        "office": "testoffice",
        "date": "2026-03-30",
        "open_seconds": 30600,
        "services": [{"id": sid, "name": sid.upper()} for sid in services],
    }


def staff(t: float, counter: str, *services: str) -> dict[str, Any]:
    line: dict[str, Any] = {"kind": "staff", "t": t, "counter": counter}
    if services:
        return line | {"action": "open", "services": list(services)}
    return line | {"action": "close"}


def arrival(
    t: float,
    ticket: str,
    service: str,
    seconds: float = 100,
    patience: float = 10_000,
    *,
    priority: bool = False,
    no_show: bool = False,
) -> dict[str, Any]:
    return {
        "kind": "arrival",
        "t": t,
        "ticket": ticket,
        "service": service,
        "priority": priority,
        "service_seconds": seconds,
        "patience_seconds": patience,
        "no_show": no_show,
    }


def end(t: float) -> dict[str, Any]:
    return {"kind": "end", "t": t}


def trace_of(*lines: dict[str, Any]) -> Trace:
    return parse_trace(json.dumps(line) for line in lines)


# Worked by hand (c1 serves certs and moving, c2 certs only; c3 opens and closes idle):
#   10 a1 -> c1 until 310          20 a2 -> c2 until 120
#   30 a3 (will not come) waits    40 a4 waits, patience 100     50 a5 priority waits
#  120 c2 calls a5 (priority, ahead of a3) until 180
#  140 a4 gives up                180 c2 calls a3, who does not come: no-show at 240
#  200 c2 told to close: it holds a3, so it pauses and closes at 240 without calling a6
#  210 a6 waits                   310 c1 calls a6 until 340
#  320 a7 waits, patience 30      340 c1 calls a7 (before 350, when it would have left)
#  400 a8 waits                   420 end: a8 unserved; c1 finishes a7 at 440 after hours
HAND = (
    office(),
    staff(0, "c1", "certs", "moving"),
    staff(0, "c2", "certs"),
    staff(0, "c3", "moving"),
    staff(5, "c3"),
    arrival(10, "a1", "moving", 300),
    arrival(20, "a2", "certs", 100),
    arrival(30, "a3", "certs", 50, no_show=True),
    arrival(40, "a4", "moving", 200, 100),
    arrival(50, "a5", "certs", 60, priority=True),
    staff(200, "c2"),
    arrival(210, "a6", "certs", 30),
    arrival(320, "a7", "moving", 100, 30),
    arrival(400, "a8", "certs", 50, 1000),
    end(420),
)

SERVED, NO_SHOW, ABANDONED, UNSERVED = (
    Outcome.SERVED,
    Outcome.NO_SHOW,
    Outcome.ABANDONED,
    Outcome.UNSERVED,
)


async def events_of(aredis: AsyncRedis, office_id: str) -> Counter[str]:
    stream = await aredis.xrange(keys.events(office_id))
    return Counter(json.loads(fields["e"])["type"] for _, fields in stream)


async def test_hand_trace_outcomes(queue: QueueClient, settings: Settings) -> None:
    rows = await replay(trace_of(*HAND), queue, LineEstimator(settings))

    assert [(r.ticket, r.issued_at, r.called_at, r.outcome) for r in rows] == [
        ("a1", 10, 10, SERVED),
        ("a2", 20, 20, SERVED),
        ("a3", 30, 180, NO_SHOW),
        ("a4", 40, None, ABANDONED),
        ("a5", 50, 120, SERVED),
        ("a6", 210, 310, SERVED),
        ("a7", 320, 340, SERVED),
        ("a8", 400, None, UNSERVED),
    ]
    # What the stand-in published: certs has 2 counters until c2 pauses at 200, and
    # its history is a2's 100 s and a5's 60 s by 210, then also a6's 30 s by 400.
    assert [(r.ahead, r.servers, r.predicted_wait) for r in rows] == [
        (0, 1, 600),
        (0, 2, 300),
        (0, 2, 300),
        (0, 1, 600),
        (0, 2, 300),  # the priority ticket is ahead of a3
        (0, 1, 80),
        (0, 1, 300),
        (0, 1, round(190 / 3, 3)),
    ]
    # The stand-in is the baseline formula, so the baseline says the same.
    assert [r.baseline_wait for r in rows] == [r.predicted_wait for r in rows]

    snapshot = await queue.snapshot("testoffice", now=load_opening() + 500)
    states = {c.id: (c.state, c.current) for c in snapshot.counters}
    assert states == {
        "c1": (CounterState.OPEN, None),
        "c2": (CounterState.CLOSED, None),
        "c3": (CounterState.CLOSED, None),
    }
    assert [s.prefix for s in sorted(snapshot.services.values(), key=lambda s: s.prefix)] == [
        "A",
        "B",
    ]
    assert {sid: s.default_seconds for sid, s in snapshot.services.items()} == {
        "certs": settings.default_service_seconds,
        "moving": settings.default_service_seconds,
    }
    assert [tid for tid, _ in snapshot.lines["certs"]["regular"]] == ["00000008"]
    events = await events_of(queue.redis, "testoffice")
    assert events["issued"] == 8
    assert events["called"] == 6
    assert events["started"] == events["finished"] == 5
    assert events["no_show"] == events["abandoned"] == 1
    assert events["counter_paused"] == 1
    assert events["counter_closed"] == 2


def load_opening() -> float:
    return trace_of(office(), end(0)).opening


async def test_same_moment_rules(queue: QueueClient, settings: Settings) -> None:
    # At t = 100: a2's patience ends, c1 is told to close and finishes a1, all at once.
    # a2 has gone before c1 is free; c1 closes without calling a3, who is called when
    # c1 opens again at 150.
    trace = trace_of(
        office(),
        staff(0, "c1", "certs"),
        arrival(0, "a1", "certs", 100),
        arrival(10, "a2", "certs", 50, 90),
        arrival(20, "a3", "certs", 50),
        staff(100, "c1"),
        staff(150, "c1", "certs"),
        end(300),
    )
    rows = await replay(trace, queue, LineEstimator(settings))
    assert [(r.ticket, r.called_at, r.outcome) for r in rows] == [
        ("a1", 0, SERVED),
        ("a2", None, ABANDONED),
        ("a3", 150, SERVED),
    ]


async def test_open_again_before_the_close_is_done(queue: QueueClient, settings: Settings) -> None:
    # c1 is told to close at 50 while serving a1, then opens again at 70 with one more
    # service: it never closes, and after a1 calls a2 (waiting since 60), then a3.
    trace = trace_of(
        office(),
        staff(0, "c1", "certs"),
        arrival(0, "a1", "certs", 100),
        staff(50, "c1"),
        arrival(60, "a2", "certs", 100),
        staff(70, "c1", "certs", "moving"),
        arrival(80, "a3", "moving", 50),
        end(300),
    )
    rows = await replay(trace, queue, LineEstimator(settings))
    assert [(r.ticket, r.called_at, r.outcome, r.servers) for r in rows] == [
        ("a1", 0, SERVED, 1),
        ("a2", 100, SERVED, 0),  # c1 was paused: no counter for certs
        ("a3", 200, SERVED, 1),
    ]
    (counter,) = (await queue.snapshot("testoffice", now=load_opening() + 400)).counters
    assert (counter.state, counter.services) == (CounterState.OPEN, ("certs", "moving"))


async def test_truth_stays_hidden(queue: QueueClient, settings: Settings) -> None:
    """A resident's own truth cannot change what was published to them."""
    first = await replay(trace_of(*HAND), queue, LineEstimator(settings))
    await queue.redis.flushall()
    truth = {"service_seconds": 999, "patience_seconds": 5, "no_show": True}
    secret = [line | truth if line.get("ticket") in {"a1", "a8"} else line for line in HAND]
    second = await replay(trace_of(*secret), queue, LineEstimator(settings))

    def published(row: Row) -> tuple[float, float, float, int, int]:
        return (row.predicted_wait, row.low, row.high, row.ahead, row.servers)

    assert published(second[0]) == published(first[0])
    assert published(second[-1]) == published(first[-1])


async def test_refuses_an_office_that_exists(queue: QueueClient, settings: Settings) -> None:
    await replay(trace_of(*HAND), queue, LineEstimator(settings))
    with pytest.raises(ReplayError, match='office "testoffice" already exists'):
        await replay(trace_of(*HAND), queue, LineEstimator(settings))


async def test_estimator_must_cover_the_new_ticket(queue: QueueClient, settings: Settings) -> None:
    with pytest.raises(ReplayError, match="line 5: the estimator gave no estimate"):
        await replay(
            trace_of(*HAND[:4], arrival(1, "x", "certs"), end(2)), queue, Forgetful(settings)
        )


def test_prefixes() -> None:
    assert PREFIXES[:3] == ("A", "B", "C")
    assert PREFIXES[25:28] == ("Z", "AA", "AB")


# -- scoring ----------------------------------------------------------------------------------


def row(
    outcome: Outcome,
    issued: float,
    called: float | None,
    predicted: float,
    low: float,
    high: float,
    baseline: float,
) -> Row:
    return Row(
        ticket="t",
        service="certs",
        issued_at=issued,
        predicted_wait=predicted,
        low=low,
        high=high,
        ahead=0,
        servers=1,
        called_at=called,
        outcome=outcome,
        baseline_wait=baseline,
    )


ROWS = (
    # realised 100: error 20, inside [60, 200], both under 15 min; baseline error 50
    row(SERVED, 0, 100, 120, 60, 200, 50),
    # realised 1000: error 400, outside [300, 900], band <15 vs 15-30; baseline error 0
    row(NO_SHOW, 0, 1000, 600, 300, 900, 1000),
    # realised 2000: error 0, inside, 30-60 both; baseline 4000 (over 60): error 2000
    row(SERVED, 100, 2100, 2000, 1500, 3000, 4000),
    # not scored
    row(ABANDONED, 0, None, 10, 0, 20, 10),
    row(UNSERVED, 0, None, 10, 0, 20, 10),
)


def test_score_by_hand() -> None:
    system = score(ROWS)
    assert system.scored == 3
    assert system.mae == pytest.approx(140)
    assert system.rmse == pytest.approx(math.sqrt((20**2 + 400**2) / 3))
    assert system.p90 == pytest.approx(20 + 0.8 * 380)  # between 20 and 400
    assert system.coverage == pytest.approx(2 / 3)
    assert system.bands == pytest.approx(2 / 3)

    baseline = score_baseline(ROWS)
    assert baseline.scored == 3
    assert baseline.mae == pytest.approx(2050 / 3)
    assert baseline.rmse == pytest.approx(math.sqrt((50**2 + 2000**2) / 3))
    assert baseline.p90 == pytest.approx(50 + 0.8 * 1950)
    assert baseline.coverage is None
    assert baseline.bands == pytest.approx(2 / 3)  # 4000 says over 60, it was 30-60


def test_score_of_nothing() -> None:
    empty = score(ROWS[3:])
    assert empty.scored == 0
    assert math.isnan(empty.mae)
    assert empty.coverage is not None
    assert math.isnan(empty.coverage)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, 0), (899.9, 0), (900, 1), (1799, 1), (1800, 2), (3599, 2), (3600, 3), (9999, 3)],
)
def test_bands(seconds: float, expected: int) -> None:
    assert band(seconds) == expected


def test_percentile() -> None:
    assert percentile([7.0], 0.9) == 7
    assert percentile([10.0, 0.0], 0.9) == 9
    assert percentile(list(map(float, range(11))), 0.9) == 9


# -- bad traces -------------------------------------------------------------------------------

GOOD_TAIL = (staff(0, "c1", "certs"), arrival(5, "a1", "certs"), end(10))


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "line 1: the trace is empty"),
        ([end(0)], "line 1: the first line must be the office line, not a end line"),
        (["{not json"], "line 1: not valid JSON"),
        (["[1, 2]"], "line 1: must be a JSON object, not list"),
        ([office(), {"kind": "lunch", "t": 3}], 'line 2: unknown kind "lunch"'),
        ([office(), {"t": 3}], "line 2: unknown kind null"),
        (
            [office(), {"kind": "arrival", "t": 1, "ticket": "a1", "service": "certs"}],
            "line 2: arrival line lacks no_show, patience_seconds, priority, service_seconds",
        ),
        ([office(), end(1) | {"why": "late"}], "line 2: end line has unexpected why"),
        (
            [office(), *GOOD_TAIL[:2], staff(3, "c2", "certs")],
            r"line 4: time goes backwards: t = 3.0 after t = 5.0",
        ),
        (
            [office(), arrival(1, "a1", "passport")],
            'line 2: ticket "a1" is for unknown service "passport"',
        ),
        (
            [office(), staff(0, "c1", "certs", "tax")],
            'line 2: counter "c1" serves unknown service "tax"',
        ),
        ([office(), staff(0, "c1")], 'line 2: counter "c1" closes but is not open'),
        ([office(), staff(0, "c1") | {"action": "open"}], 'line 2: counter "c1" opens without'),
        (
            [office(), staff(0, "c1") | {"action": "nap"}],
            'line 2: "action" must be "open" or "close", not "nap"',
        ),
        ([office(), staff(0, "C1", "certs")], 'line 2: counter id "C1" must be'),
        (
            [office(), arrival(1, "a1", "certs"), arrival(2, "a1", "certs")],
            'line 3: ticket "a1" arrives twice',
        ),
        ([office(), arrival(-1, "a1", "certs")], 'line 2: "t" must be a number, at least 0'),
        ([office(), arrival("soon", "a1", "certs")], 'line 2: "t" must be a number'),  # type: ignore[arg-type]
        (
            [office(), arrival(1, "a1", "certs", 0)],
            'line 2: "service_seconds" must be a positive number',
        ),
        (
            [office(), arrival(1, "a1", "certs") | {"priority": "yes"}],
            'line 2: "priority" must be true or false, not "yes"',
        ),
        ([office(), *GOOD_TAIL[:2]], "line 4: the trace has no end line"),
        (
            [office(), *GOOD_TAIL, arrival(11, "a2", "certs")],
            "line 5: nothing may follow the end line",
        ),
        ([office(), office()], "line 2: a trace has one office line"),
        ([office() | {"office": "Kokura Kita"}], 'line 1: office id "Kokura Kita" must be'),
        ([office() | {"date": "30/03/2026"}], 'line 1: "date" must be YYYY-MM-DD'),
        ([office(("certs", "certs"))], 'line 1: service "certs" is listed twice'),
        ([office() | {"services": []}], 'line 1: "services" must be a non-empty list'),
    ],
)
def test_bad_traces(lines: list[Any], message: str) -> None:
    text = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    with pytest.raises(TraceError, match=message):
        parse_trace(text)


def test_blank_lines_are_skipped_and_counted() -> None:
    text = ["", json.dumps(office()), "  ", json.dumps(arrival(1, "a1", "tax")), ""]
    with pytest.raises(TraceError, match='line 4: ticket "a1" is for unknown service "tax"'):
        parse_trace(text)


def test_samples_parse() -> None:
    assert [path.name for path in SAMPLES] == [
        "sample-monday.jsonl",
        "sample-moving-season.jsonl",
        "sample-normal.jsonl",
    ]
    for path in SAMPLES:
        trace = load_trace(path)
        assert trace.arrivals
        assert trace.end.t == trace.open_seconds


# -- whole sample days ------------------------------------------------------------------------


def check_day(trace: Trace, rows: list[Row]) -> Counter[str]:
    arrivals = {a.ticket: a for a in trace.arrivals}
    assert [r.ticket for r in rows] == list(arrivals)
    counts: Counter[str] = Counter(r.outcome.value for r in rows)
    assert sum(counts.values()) == len(arrivals)
    for r in rows:
        a: Arrival = arrivals[r.ticket]
        assert (r.service, r.issued_at) == (a.service, a.t)
        assert 0 <= r.low <= r.predicted_wait <= r.high
        assert r.ahead >= 0
        assert r.servers >= 0
        patience_ends = a.t + a.truth.patience_seconds
        if r.outcome in (SERVED, NO_SHOW):
            assert r.called_at is not None
            assert a.t <= r.called_at <= trace.end.t
            assert r.called_at <= patience_ends + 1e-6
            assert (r.outcome is NO_SHOW) == a.truth.no_show
        else:
            assert r.called_at is None
            if r.outcome is ABANDONED:
                assert patience_ends <= trace.end.t
            else:
                assert patience_ends > trace.end.t - 1e-6
    return counts


async def check_events(aredis: AsyncRedis, trace: Trace, counts: Counter[str]) -> None:
    events = await events_of(aredis, trace.office)
    assert events["issued"] == len(trace.arrivals)
    assert events["called"] == counts["served"] + counts["no_show"]
    # Counters finish what they hold after hours, so every served ticket is finished.
    assert events["started"] == events["finished"] == counts["served"]
    assert events["no_show"] == counts["no_show"]
    assert events["abandoned"] == counts["abandoned"]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
async def test_sample_day_with_stand_in(path: Path, queue: QueueClient, settings: Settings) -> None:
    trace = load_trace(path)
    rows = await replay(trace, queue, LineEstimator(settings))
    counts = check_day(trace, rows)
    await check_events(queue.redis, trace, counts)
    assert counts["served"] > counts["abandoned"]


@pytest.mark.slow
@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
async def test_sample_day_with_estimator(
    path: Path, queue: QueueClient, settings: Settings
) -> None:
    trace = load_trace(path)
    rows = await replay(trace, queue, Estimator(settings))
    counts = check_day(trace, rows)
    await check_events(queue.redis, trace, counts)
    system = score(rows)
    assert system.scored == counts["served"] + counts["no_show"]
    assert all(math.isfinite(x) for x in (system.mae, system.rmse, system.p90, system.bands))


# -- command line -----------------------------------------------------------------------------


def write_trace(path: Path, lines: tuple[dict[str, Any], ...]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_main_with_redis_url(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_trace(tmp_path / "hand.jsonl", HAND)
    out = tmp_path / "out.jsonl"
    assert main([str(trace), "--out", str(out), "--redis-url", redis_url]) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [list(line) for line in lines] == [
        [
            "ticket",
            "service",
            "issued_at",
            "predicted_wait",
            "low",
            "high",
            "ahead",
            "servers",
            "called_at",
            "outcome",
        ]
    ] * 8
    assert [(line["ticket"], line["called_at"], line["outcome"]) for line in lines] == [
        ("a1", 10, "served"),
        ("a2", 20, "served"),
        ("a3", 180, "no_show"),
        ("a4", None, "abandoned"),
        ("a5", 120, "served"),
        ("a6", 310, "served"),
        ("a7", 340, "served"),
        ("a8", None, "unserved"),
    ]
    printed = capsys.readouterr().out
    assert "8 tickets: 5 served, 1 no_show, 1 abandoned, 1 unserved" in printed
    assert "\nsystem " in printed
    assert "\nbaseline " in printed


def test_main_with_embedded_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    trace = write_trace(tmp_path / "hand.jsonl", HAND)
    out = tmp_path / "out.jsonl"
    assert main([str(trace), "--out", str(out)]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 8
    assert "8 tickets" in capsys.readouterr().out


def test_main_reports_a_bad_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "bad.jsonl", (office(), arrival(1, "a1", "tax"), end(2)))
    out = tmp_path / "out.jsonl"
    assert main([str(trace), "--out", str(out)]) == 1
    assert 'bad.jsonl: line 2: ticket "a1" is for unknown service "tax"' in capsys.readouterr().err
    assert not out.exists()
    assert main([str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 1
    assert "cannot read the trace" in capsys.readouterr().err


def test_main_reports_a_redis_it_cannot_reach(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_trace(tmp_path / "hand.jsonl", HAND)
    out = tmp_path / "out.jsonl"
    assert main([str(trace), "--out", str(out), "--redis-url", "redis://127.0.0.1:1/0"]) == 1
    assert "cannot reach Redis: Error 111 connecting to 127.0.0.1:1" in capsys.readouterr().err
    assert not out.exists()
