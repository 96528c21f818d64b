"""Errors of remote consultation. Each carries the HTTP status the API answers with, and
the WebSocket close code signaling uses when it refuses a connection for that reason."""

from __future__ import annotations

from ..queue.exceptions import BY_CODE, QueueError


class NotParticipant(QueueError):
    """The caller is not the kiosk, the specialist or the invited person of the call."""

    status = 403
    code = "forbidden"
    close = 4403


class CallEnded(QueueError):
    status = 410
    code = "gone"
    close = 4410


#: Errors the call scripts report, by their code.
ERRORS: dict[str, type[QueueError]] = {
    **BY_CODE,
    NotParticipant.code: NotParticipant,
    CallEnded.code: CallEnded,
}
