"""An aiohttp.web backend that holds ONE Final POS client for the whole life of the app.

    python examples/async_backend.py            # http://127.0.0.1:8080
    curl -X POST localhost:8080/customers \
         -d '{"email": "a@example.com", "firstName": "A", "lastName": "B"}'
    curl localhost:8080/customers/ID

The client is opened when the app starts and closed when it stops (`cleanup_ctx`): every
request handler shares its connection pool and retry budget. A client per request would leak
sockets and memory and throw away keep-alive connections. API errors become HTTP answers with
the API's status and message. With no FINALPOS_API_KEY the app talks to an embedded sandbox.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from finalpos_async import APIStatusError, AsyncFinalPOS, NotFoundError

CLIENT = web.AppKey("finalpos", AsyncFinalPOS)


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


async def create_customer(request: web.Request) -> web.Response:
    """POST /customers {email, firstName, lastName}: create one customer."""
    body = await request.json()
    missing = [f for f in ("email", "firstName", "lastName") if not body.get(f)]
    if missing:
        return web.json_response({"error": f"missing field(s): {', '.join(missing)}"}, status=400)
    client = request.app[CLIENT]
    try:
        customer = await client.customers.create(
            email=body["email"],
            first_name=body["firstName"],
            last_name=body["lastName"],
            # One key per logical request: a retry by our client never creates twice.
            idempotency_key=request.headers.get("Idempotency-Key"),
        )
    except APIStatusError as exc:
        return web.json_response({"error": exc.message}, status=exc.status_code)
    return web.json_response(_customer_json(customer), status=201)


async def get_customer(request: web.Request) -> web.Response:
    """GET /customers/{id}: one customer, 404 when the API has none."""
    client = request.app[CLIENT]
    try:
        customer = await client.customers.retrieve(request.match_info["id"])
    except NotFoundError:
        return web.json_response({"error": "no such customer"}, status=404)
    return web.json_response(_customer_json(customer))


async def list_customers(request: web.Request) -> web.Response:
    """GET /customers?limit=N: the first N customers (one page is fetched, not the whole list)."""
    limit = min(int(request.query.get("limit", "20")), 100)
    client = request.app[CLIENT]
    page = await client.customers.list(limit=limit)  # `await`: the first page only
    return web.json_response([_customer_json(c) for c in page])


def create_app() -> web.Application:
    """The application: routes plus the client's lifetime."""
    app = web.Application()
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
