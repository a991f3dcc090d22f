"""An aiohttp.web backend that holds ONE Final POS client for the whole life of the app.

    python examples/async_backend.py            # http://127.0.0.1:8080
    curl -X POST localhost:8080/customers \
         -d '{"email": "a@example.com", "firstName": "A", "lastName": "B"}'
    curl localhost:8080/customers/ID

The client is opened when the app starts and closed when it stops (`cleanup_ctx`): every
request handler shares its connection pool and retry budget. A client per request would leak
sockets and memory and throw away keep-alive connections. An error status from the API (400 for
a malformed id, 404, 409, ...) is answered with that status and the API's error body; a request
this app cannot use (a body that is not a JSON object, a missing field, an id the SDK refuses to
send) gets 400 in the same `{statusCode, message, error}` shape, never a 500. With no
FINALPOS_API_KEY the app talks to an embedded sandbox.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any, TypeGuard

from aiohttp import web

from finalpos_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncFinalPOS,
    ResponseValidationError,
)

CLIENT = web.AppKey("finalpos", AsyncFinalPOS)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def finalpos_client(app: web.Application) -> AsyncIterator[None]:
    """Open the client at start-up, close it at shutdown."""
    client = AsyncFinalPOS() if os.environ.get("FINALPOS_API_KEY") else AsyncFinalPOS(sandbox=True)
    async with client:
        app[CLIENT] = client
        yield


def _customer_json(customer: Any) -> dict[str, Any]:
    return {
        "id": customer.id,
        "email": customer.email,
        "firstName": customer.first_name,
        "lastName": customer.last_name,
    }


def _is_object(value: object) -> TypeGuard[dict[str, Any]]:
    """A JSON object (JSON's keys are always strings)."""
    return isinstance(value, dict)


def _error(status: int, message: str) -> web.Response:
    """An error answer in the API's own shape, so callers parse one format whoever refused."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:  # a status the stdlib has no name for
        reason = "Error"
    return web.json_response(
        {"statusCode": status, "message": message, "error": reason}, status=status
    )


@web.middleware
async def api_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every handler's SDK errors become answers here, in one place, instead of 500s."""
    try:
        return await handler(request)
    except APIStatusError as exc:
        # The API's status with its error body; a body that is not JSON (a proxy's HTML page)
        # becomes the SDK's readable summary of it.
        if _is_object(exc.body):
            return web.json_response(exc.body, status=exc.status_code)
        return _error(exc.status_code, exc.message)
    except ResponseValidationError:  # a 2xx answer that does not fit the API's description
        return _error(502, "the Final POS API gave an answer this app cannot read")
    except APITimeoutError:  # before APIConnectionError: it is one
        return _error(504, "the Final POS API did not answer in time")
    except APIConnectionError:
        return _error(502, "the Final POS API could not be reached")


async def create_customer(request: web.Request) -> web.Response:
    """POST /customers {email, firstName, lastName}: create one customer."""
    try:
        body: Any = await request.json()
    except ValueError:  # json.JSONDecodeError, and a body that is not UTF-8
        return _error(400, "the body is not JSON")
    if not _is_object(body):
        return _error(400, "the body must be a JSON object")
    missing = [f for f in ("email", "firstName", "lastName") if not body.get(f)]
    if missing:
        return _error(400, f"missing field(s): {', '.join(missing)}")
    wrong = [f for f in ("email", "firstName", "lastName") if not isinstance(body[f], str)]
    if wrong:
        return _error(400, f"field(s) must be strings: {', '.join(wrong)}")
    client = request.app[CLIENT]
    customer = await client.customers.create(
        email=body["email"],
        first_name=body["firstName"],
        last_name=body["lastName"],
        # One key per logical request: a retry by our client never creates twice.
        idempotency_key=request.headers.get("Idempotency-Key"),
    )
    return web.json_response(_customer_json(customer), status=201)


async def get_customer(request: web.Request) -> web.Response:
    """GET /customers/{id}: one customer; the API's 404 when it has none, its 400 for a bad id."""
    client = request.app[CLIENT]
    try:
        customer = await client.customers.retrieve(request.match_info["id"])
    except ValueError as exc:
        # The SDK refuses, before sending, an id that could change the route or the request
        # (control characters, `..`): the caller's mistake, so a 400 naming it.
        return _error(400, str(exc))
    return web.json_response(_customer_json(customer))


async def list_customers(request: web.Request) -> web.Response:
    """GET /customers?limit=N: the first N customers (one page is fetched, not the whole list)."""
    try:
        limit = int(request.query.get("limit", "20"))
    except ValueError:
        return _error(400, "limit must be an integer")
    if limit < 1:
        return _error(400, "limit must be at least 1")
    client = request.app[CLIENT]
    page = await client.customers.list(limit=min(limit, 100))  # `await`: the first page only
    return web.json_response([_customer_json(c) for c in page])


def create_app() -> web.Application:
    """The application: routes plus the client's lifetime."""
    app = web.Application(middlewares=[api_errors])
    app.cleanup_ctx.append(finalpos_client)
    app.add_routes(
        [
            web.post("/customers", create_customer),
            web.get("/customers", list_customers),
            web.get("/customers/{id}", get_customer),
        ]
    )
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8080")))
