"""Reading request bodies within a size limit, and JSON ones validated, with clear messages."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import orjson
from starlette.requests import Request

from .exceptions import BadRequest, PayloadTooLarge, Unprocessable, UnsupportedMediaType

T = TypeVar("T")


async def read_limited(request: Request, limit: int, what: str = "request body") -> bytes:
    """The request's body, refused (413) as soon as it is known to be over ``limit`` bytes:
    by its ``Content-Length``, or while it streams in. ``what`` names it in the message."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(f'Content-Length "{declared[:20]}" is not a number')
        if int(declared) > limit:
            raise PayloadTooLarge(f"{what} is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"{what} is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object, refusing more than ``limit`` bytes before reading it all."""
    body = await read_limited(request, limit)
    if not body.strip():
        if required:
            raise BadRequest("request body is empty; send a JSON object")
        return {}
    media = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if media != "application/json":
        raise UnsupportedMediaType(f'send application/json, not "{media[:60]}"')
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # also for text that is not UTF-8
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(value).__name__}")
    return value


def _check(body: dict[str, Any], name: str, kind: type[T]) -> T | None:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int in Python; JSON true must not pass for a number, nor 1 for a bool.
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        expected = {str: "a string", bool: "true or false", float: "a number", list: "a list"}
        raise Unprocessable(
            f'field "{name}" must be {expected.get(kind, kind.__name__)}, '
            f"not {json.dumps(value)[:40]}"
        )
    return value


def maybe(body: dict[str, Any], name: str, kind: type[T]) -> T | None:
    """Field ``name``, checked to be of ``kind``; ``None`` when absent or null."""
    return _check(body, name, kind)


def get(body: dict[str, Any], name: str, kind: type[T], default: T) -> T:
    """Field ``name``, checked to be of ``kind``; ``default`` when absent or null."""
    value = _check(body, name, kind)
    return default if value is None else value


def need(body: dict[str, Any], name: str, kind: type[T]) -> T:
    """Field ``name``, checked to be of ``kind``; refused when absent or null."""
    value = _check(body, name, kind)
    if value is None:
        raise Unprocessable(f'field "{name}" is required')
    return value


def only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Unprocessable(
            f'unknown field "{unknown[0][:40]}"; allowed: {", ".join(sorted(allowed))}'
        )
