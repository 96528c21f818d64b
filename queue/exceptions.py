"""Errors of the ticket queue. Each carries the HTTP status the API answers with."""

from __future__ import annotations


class QueueError(Exception):
    """Base class: an operation was refused. ``message`` says why, quoting the bad value."""

    status = 400
    code = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(QueueError):
    status = 422
    code = "invalid"


class NotFound(QueueError):
    status = 404
    code = "not_found"


class WrongState(QueueError):
    """The ticket or counter is not in a state that allows the operation."""

    status = 409
    code = "wrong_state"


class Busy(QueueError):
    """The counter still holds a ticket."""

    status = 409
    code = "busy"


class Conflict(QueueError):
    status = 409
    code = "conflict"


class Unavailable(QueueError):
    """The service exists but does not take tickets now."""

    status = 409
    code = "unavailable"


BY_CODE: dict[str, type[QueueError]] = {
    cls.code: cls for cls in (InvalidInput, NotFound, WrongState, Busy, Conflict, Unavailable)
}
