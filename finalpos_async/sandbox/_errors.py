"""Error bodies shaped like the Final POS API's `ErrorResponseDto`.

`{"statusCode": 400, "message": "...", "error": "Bad Request"}` is the NestJS default error shape
that the docs show; every error the sandbox answers, including injected faults, uses it.
"""

from __future__ import annotations

from http import HTTPStatus

__all__ = ["SandboxHTTPError", "error_body", "reason_phrase"]


def reason_phrase(status: int) -> str:
    """The standard reason phrase of `status` ("Bad Request"), or "Error" for unknown codes."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_body(status: int, message: str) -> dict[str, object]:
    """The JSON body of an error answer."""
    return {"statusCode": status, "message": message, "error": reason_phrase(status)}


class SandboxHTTPError(Exception):
    """Raised inside the sandbox to answer `status` with an `ErrorResponseDto` body."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
