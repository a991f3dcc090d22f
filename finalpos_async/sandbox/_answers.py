"""The sandbox's answers that are not a handler's: JSON bodies, injected faults, a misfit 2xx."""

from __future__ import annotations

import contextlib
import math
import socket
import struct
from collections.abc import Mapping
from typing import Any, cast

from aiohttp import web

from . import _json
from ._errors import error_body
from ._faults import Fault

__all__ = ["fault_response", "json_response", "misfit", "reset_connection"]


def json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    """`payload` as a JSON answer with `status`."""
    return web.Response(
        body=_json.dumps(payload),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _retry_after_headers(seconds: float) -> dict[str, str]:
    """`Retry-After` in whole seconds (all the header allows), rounded up; a fractional wait
    also goes out exactly as `retry-after-ms`, which clients that know it (ours) prefer."""
    headers = {"Retry-After": str(math.ceil(seconds))}
    if not float(seconds).is_integer():
        headers["retry-after-ms"] = f"{seconds * 1000:.0f}"
    return headers


def reset_connection(request: web.Request) -> None:
    """Drop the client's connection with a TCP reset, without any answer."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN; where the option
        # has another layout (Windows), a plain abort still drops the connection without answer
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def fault_response(fault: Fault) -> web.Response:
    """The error answer of an injected status fault (429s and others carry their Retry-After)."""
    headers = {} if fault.retry_after is None else _retry_after_headers(fault.retry_after)
    return json_response(
        fault.status,
        error_body(fault.status, f"Sandbox fault injected: HTTP {fault.status}."),
        headers,
    )


def misfit(response: web.StreamResponse) -> web.StreamResponse:
    """The answer of a write that took effect, minus the record's id: a 2xx that does not fit.

    Only a 2xx JSON object is changed (its status kept: 201 for a create); an error, a list or
    an empty body is given as it was.
    """
    if not 200 <= response.status < 300 or not isinstance(response, web.Response):
        return response
    raw = response.body
    if not isinstance(raw, bytes):
        return response
    try:
        payload = _json.loads(raw)
    except ValueError:
        return response
    if not isinstance(payload, dict):
        return response
    fields = {k: v for k, v in cast("dict[str, Any]", payload).items() if k not in ("id", "_id")}
    dropped = ("content-type", "content-length")  # set anew for the new body
    headers = {k: v for k, v in response.headers.items() if k.lower() not in dropped}
    return json_response(response.status, fields, headers)
