"""HTTP-facing errors of the web layer; each carries its status and a stable code."""

from __future__ import annotations


class HTTPError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(HTTPError):
    status = 400
    code = "bad_request"


class Unauthorized(HTTPError):
    status = 401
    code = "unauthorized"


class Forbidden(HTTPError):
    status = 403
    code = "forbidden"


class SecondFactorRequired(Forbidden):
    """The account must set up its authenticator before it may do anything else."""

    code = "second_factor_required"


class PayloadTooLarge(HTTPError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(HTTPError):
    status = 415
    code = "unsupported_media_type"


class Unprocessable(HTTPError):
    status = 422
    code = "invalid"


class TooManyRequests(HTTPError):
    status = 429
    code = "too_many_requests"


class StoreUnavailable(HTTPError):
    status = 503
    code = "unavailable"
