"""Values from Redis as text. The clients decode responses, but redis-py types them
as ``bytes | str``; these helpers give the rest of the code plain ``str``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def texts(values: Iterable[bytes | str]) -> list[str]:
    return [text(v) for v in values]


def mapping(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}


def fields(values: Mapping[str, str]) -> Mapping[Any, Any]:
    """A hash's fields as redis-py's ``hset(mapping=...)`` is typed to take them."""
    return values
