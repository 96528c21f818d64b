"""``madoguchi replay``: replay a trace file, write its rows, print the accuracy."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import redis
from redis.asyncio import Redis

from ...embedded import EmbeddedRedisError, RedisServer, find_redis_server
from ...settings import Settings, load_settings
from ..estimator import Estimator
from ..tickets import QueueClient
from .harness import ReplayError, Row, replay
from .scoring import summary
from .trace import Trace, TraceError, load_trace


async def _replay_into(trace: Trace, redis_url: str, settings: Settings) -> list[Row]:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        return await replay(trace, QueueClient(client, settings), Estimator(settings))
    finally:
        await client.aclose()


def run(trace: Trace, settings: Settings, redis_url: str | None = None) -> list[Row]:
    """Replay ``trace`` into ``redis_url``, or into a throw-away embedded Redis when ``None``."""
    if redis_url is not None:
        return asyncio.run(_replay_into(trace, redis_url, settings))
    with tempfile.TemporaryDirectory(prefix="madoguchi-replay-") as scratch:
        server = RedisServer(binary=find_redis_server(), data_dir=Path(scratch), ephemeral=True)
        server.start()
        try:
            return asyncio.run(_replay_into(trace, server.url, settings))
        finally:
            server.stop()


def write_rows(rows: Iterable[Row], out: TextIO) -> None:
    for row in rows:
        out.write(row.to_json() + "\n")


def main(argv: list[str]) -> int:
    """``madoguchi replay TRACE --out OUT [--redis-url URL]``; ``argv`` follows ``replay``."""
    parser = argparse.ArgumentParser(
        prog="madoguchi replay",
        description="Replay an office-day trace in virtual time through the queue and the "
        "wait estimator, write one line per ticket and print the estimate's accuracy.",
    )
    parser.add_argument("trace", type=Path, help="the trace, JSON Lines")
    parser.add_argument("--out", type=Path, required=True, help="where to write the ticket lines")
    parser.add_argument(
        "--redis-url",
        help="Redis to replay into (default: REDIS_URL, else a throw-away embedded Redis)",
    )
    args = parser.parse_args(argv)
    settings = load_settings()
    try:
        trace = load_trace(args.trace)
    except OSError as exc:
        print(f"madoguchi replay: cannot read the trace: {exc}", file=sys.stderr)
        return 1
    except TraceError as exc:
        print(f"madoguchi replay: {args.trace}: {exc}", file=sys.stderr)
        return 1
    try:
        rows = run(trace, settings, args.redis_url or settings.redis_url)
    except redis.ConnectionError as exc:
        # The URL may carry a password: the error names host and port already.
        print(f"madoguchi replay: cannot reach Redis: {exc}", file=sys.stderr)
        return 1
    except (ReplayError, EmbeddedRedisError) as exc:
        print(f"madoguchi replay: {exc}", file=sys.stderr)
        return 1
    try:
        with args.out.open("w", encoding="utf-8") as out:
            write_rows(rows, out)
    except OSError as exc:
        print(f"madoguchi replay: cannot write the results: {exc}", file=sys.stderr)
        return 1
    print(f"{args.trace.name} ({trace.office}, {trace.date}) -> {args.out}")
    print(summary(rows))
    return 0
