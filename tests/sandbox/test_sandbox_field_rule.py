"""One validation of a field, everywhere: the library, the CLI's import and the sandbox agree.

The rule: a field is checked against what the spec declares for it (type, `required`, `enum`, a
`format` such as date-time or decimal, a `pattern`) and nothing else, never a check guessed from
its name; a field is missing only when it is absent (`""` is a value). The CLI's CSV reader reads
a blank cell as "not given", since CSV cannot tell an empty value from a missing one.

Each case is one customer create, put to the three:

- the library: `client.customers.create(...)` against a port nothing listens on, so "accepted"
  means it got as far as connecting (`APIConnectionError`), "refused" a `TypeError`/`ValueError`
  raised before anything was sent;
- the CLI: the import's row checks on a JSON Lines record (and, where it differs, a CSV row);
- the sandbox: the same body POSTed over HTTP (201, or a 400 naming the field).
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from finalpos_async import AsyncFinalPOS
from finalpos_async._exceptions import APIConnectionError
from finalpos_async.cli._rows import RowParser, read_records
from finalpos_async.cli._spec import find_resource

GOOD = {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"}
NO_FIRST_NAME = {k: v for k, v in GOOD.items() if k != "firstName"}
PYTHON_NAMES = {
    "firstName": "first_name",
    "lastName": "last_name",
    "lastAction": "last_action",
    "totalSpent": "total_spent",
}

Verdict = tuple[bool, str]
"""(accepted, what the refusal says; "" when accepted)."""


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port with nothing listening (bound, never listened on, so no one else takes it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def library(port: int, body: dict[str, Any]) -> Verdict:
    kwargs = {PYTHON_NAMES.get(key, key): value for key, value in body.items()}
    client = AsyncFinalPOS(api_key="k", base_url=f"http://127.0.0.1:{port}", max_retries=0)
    try:
        await client.customers.create(**kwargs)
    except APIConnectionError:
        return True, ""
    except (TypeError, ValueError) as exc:
        return False, str(exc)
    finally:
        await client.close()
    raise AssertionError("nothing listens on the port, yet the create succeeded")


def _parser() -> RowParser:
    found = find_resource("customers")
    assert found is not None
    assert found.create_schema is not None
    return RowParser(found.create_schema)


def cli_jsonl(body: dict[str, Any]) -> Verdict:
    ((line, record),) = list(read_records(io.StringIO(json.dumps(body) + "\n"), "jsonl"))
    assert isinstance(record, dict)
    row = _parser().parse(line, record)
    return row.ok, "; ".join(str(e) for e in row.errors)


def cli_csv(body: dict[str, str]) -> Verdict:
    text = ",".join(body) + "\n" + ",".join(body.values()) + "\n"
    ((line, record),) = list(read_records(io.StringIO(text), "csv"))
    assert isinstance(record, dict)
    row = _parser().parse(line, record)
    return row.ok, "; ".join(str(e) for e in row.errors)


async def sandbox(http: aiohttp.ClientSession, body: dict[str, Any]) -> Verdict:
    async with http.post("/v1/api/customer", json=body) as response:
        answer = await response.json()
    if response.status == 201:
        return True, ""
    assert response.status == 400, answer
    return False, str(answer["message"])


async def verdicts(
    http: aiohttp.ClientSession, port: int, body: dict[str, Any]
) -> dict[str, Verdict]:
    return {
        "library": await library(port, body),
        "cli": cli_jsonl(body),
        "sandbox": await sandbox(http, body),
    }


def named(message: str, field: str) -> bool:
    """The refusal names the field, by its wire name or (the library) its Python name."""
    return field in message or PYTHON_NAMES.get(field, "\0") in message


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({**GOOD, "email": "not-an-email"}, id="email-without-@"),
        pytest.param({**GOOD, "firstName": ""}, id="empty-required-string"),
        pytest.param({**GOOD, "phone": ""}, id="empty-optional-string"),
        pytest.param({**GOOD, "lastAction": "2025-12-07T19:31:48.436+00:00"}, id="date-time"),
        pytest.param({**GOOD, "totalSpent": "-1000.50"}, id="decimal"),
    ],
)
async def test_accepted_by_all_three(
    http: aiohttp.ClientSession, closed_port: int, body: dict[str, Any]
) -> None:
    found = await verdicts(http, closed_port, body)
    assert found == {"library": (True, ""), "cli": (True, ""), "sandbox": (True, "")}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(NO_FIRST_NAME, "firstName", id="missing"),
        pytest.param({**GOOD, "firstName": 3}, "firstName", id="wrong-type"),
        pytest.param({**GOOD, "lastAction": "yesterday"}, "lastAction", id="bad-date-time"),
        pytest.param({**GOOD, "tags": ["vip", 7]}, "tags", id="wrong-item-type"),
        pytest.param({**GOOD, "totalSpent": "12,50"}, "totalSpent", id="bad-decimal"),
    ],
)
async def test_refused_by_all_three_naming_the_field(
    http: aiohttp.ClientSession, closed_port: int, body: dict[str, Any], field: str
) -> None:
    found = await verdicts(http, closed_port, body)
    for where, (accepted, message) in found.items():
        assert not accepted, f"{where} accepted {body}"
        assert named(message, field), f"{where}: {message!r} does not name {field}"


async def test_a_blank_csv_cell_is_a_field_not_given(
    http: aiohttp.ClientSession, closed_port: int
) -> None:
    # CSV cannot say "" apart from "nothing": a blank firstName cell is the field left out, so it
    # gets the verdict of the body without firstName, from the CLI as from the other two
    accepted, message = cli_csv({**GOOD, "firstName": ""})
    assert not accepted
    assert message == "line 2, field firstName: is required"
    for accepted, message in (
        await library(closed_port, NO_FIRST_NAME),
        await sandbox(http, NO_FIRST_NAME),
    ):
        assert not accepted
        assert named(message, "firstName")
    # a blank optional cell is left out, and the row is fine
    assert cli_csv({**GOOD, "phone": ""}) == (True, "")
