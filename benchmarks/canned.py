"""Canned customer data shared by the benchmark server and the benchmark clients.

The server answers every request from bytes encoded once at start-up, so that its cost per
request is a copy, never a JSON encode: the figure we compare is the *client's* CPU time, and a
server that spends little on each request keeps the wall-clock side (req/s) about the client too.

The records follow `CustomerDto` in the spec with every documented field filled in, plus one
field the spec does not list (`loyaltyTier`): real customer DTOs grow fields from the company's
custom tables, and an SDK that keeps unknown fields pays for that on every record.

No string here contains `'`, `\\` or `$`, because the nginx configuration embeds the create
response in a single-quoted `return` directive where those characters are special.
"""

from __future__ import annotations

import json
from typing import Any

API_KEY = "bench-api-key"
"""The key every client sends; the servers do not check it, but every client pays for the header."""

RETRIEVE_PATH = "/v1/api/customer/{id}"
CREATE_PATH = "/v1/api/customer"
LIST_PATH = "/v1/api/customers"
EMPTY_TARGET = "/empty"
"""A base-URL path under which the collection lists nothing and creates answer 201 (imports)."""

PAGE_LIMIT = 100
"""Records per list page, the `limit` every list walk sends."""

LIST_TOTAL = 950
"""Records in the listed collection: nine full pages of 100 and a last page of 50.

A walk is then exactly `PAGES_PER_WALK` requests for every client, because the last page is
shorter than `limit` and so ends the walk without an extra request for an empty page.
"""

PAGES_PER_WALK = -(-LIST_TOTAL // PAGE_LIMIT)

CUSTOMER_ID = "6571f0c2a9e4b3d21c8f7a10"
"""The id the retrieve benchmark asks for (the server answers the same record for any id)."""


def customer_record(index: int) -> dict[str, Any]:
    """Return customer number `index` as the API would send it (camelCase JSON-able dict)."""
    minute = index % 60
    return {
        "id": f"{0x6571F0C2A9E4B3D21C8F0000 + index:024x}",
        "createdAt": f"2025-12-07T19:{minute:02d}:48.436+00:00",
        "updatedAt": f"2025-12-07T20:{minute:02d}:12.001+00:00",
        "companyId": "5f1e2d3c4b5a69788796a5b4",
        "email": f"customer{index}@example.com",
        "firstName": "John",
        "lastName": f"Doe{index}",
        "fromFinal": index % 2 == 0,
        "outletId": "60a1b2c3d4e5f60718293a4b",
        "externalId": f"ext-{index:06d}",
        "phone": "+1234567890",
        "totalSpent": f"{1000 + index}.50",
        "lastAction": "2025-12-07T19:31:48.436+00:00",
        "tags": ["vip", "loyal", "premium"],
        "billing": {
            "firstName": "John",
            "lastName": "Doe",
            "address1": "123 Main St",
            "address2": "Suite 100",
            "city": "New York",
            "state": "NY",
            "country": "USA",
            "postCode": "10001",
        },
        "shipping": {
            "firstName": "John",
            "lastName": "Doe",
            "address1": "500 Market St",
            "address2": "Floor 2",
            "city": "San Francisco",
            "state": "CA",
            "country": "USA",
            "postCode": "94105",
        },
        "metadata": [{"key": "source", "value": "benchmark"}, {"key": "segment", "value": "b2c"}],
        "notes": [{"createdAt": "2025-12-07T19:31:48.436+00:00", "message": "First visit"}],
        "loyaltyTier": "gold",
    }


def create_fields(index: int) -> dict[str, Any]:
    """Return the snake_case fields of one create call (what a caller has in hand)."""
    return {
        "email": f"new{index}@example.com",
        "first_name": "Jane",
        "last_name": "Roe",
        "phone": "+1987654321",
        "tags": ["new"],
        "billing": {
            "first_name": "Jane",
            "last_name": "Roe",
            "address1": "1 Infinite Loop",
            "city": "Cupertino",
            "state": "CA",
            "country": "USA",
            "post_code": "95014",
        },
    }


def create_body(index: int) -> dict[str, Any]:
    """Return the camelCase JSON body of one create call, as a raw HTTP client would send it."""
    fields = create_fields(index)
    billing = fields["billing"]
    return {
        "email": fields["email"],
        "firstName": fields["first_name"],
        "lastName": fields["last_name"],
        "phone": fields["phone"],
        "tags": fields["tags"],
        "billing": {
            "firstName": billing["first_name"],
            "lastName": billing["last_name"],
            "address1": billing["address1"],
            "city": billing["city"],
            "state": billing["state"],
            "country": billing["country"],
            "postCode": billing["post_code"],
        },
    }


def encode(value: Any) -> bytes:
    """Encode `value` as compact JSON bytes (stdlib only, so the server needs no extras)."""
    return json.dumps(value, separators=(",", ":")).encode()


def page_records(skip: int, limit: int) -> list[dict[str, Any]]:
    """Return the records of the list page starting at `skip` (empty past the end)."""
    stop = min(LIST_TOTAL, skip + limit)
    return [customer_record(i) for i in range(max(skip, 0), stop)]


SINGLE_BODY = encode(customer_record(0))
"""The body of every retrieve and create response."""
