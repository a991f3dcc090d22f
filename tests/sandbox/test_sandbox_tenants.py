"""Several API keys: each its own account (records, counters) and its own rate-limit bucket;
and the request log a test reads from outside the sandbox."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from finalpos_async import AsyncFinalPOS
from finalpos_async.sandbox import Sandbox, main
from finalpos_async.sandbox._faults import FaultConfig, FaultInjector
from finalpos_async.sandbox._request_log import RequestLog
from finalpos_async.sandbox._routes import build_route_table
from finalpos_async.sandbox._validation import default_for
from finalpos_async.spec import load_spec

KEY_A = "sk_tenant_a_0123456789"
KEY_B = "sk_tenant_b_9876543210"
CUSTOMER = {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"}
# one token per 100 s: no bucket refills while a test runs, however loaded the machine
SLOW_LIMIT = "rate-limit=0.01,burst=3,retry-after=0.05"


def _outlet() -> dict[str, Any]:
    routes = build_route_table(load_spec())
    op = next(r for r in routes.routes if r.collection == "OutletDto" and r.kind == "create")
    properties = (op.body_schema or {}).get("properties") or {}
    required = (op.body_schema or {}).get("required", [])
    return {name: default_for(properties.get(name, {})) for name in required}


async def _status(session: aiohttp.ClientSession, key: str | None, method: str = "GET") -> int:
    headers = {} if key is None else {"x-api-key": key}
    path = "/v1/api/customers" if method == "GET" else "/v1/api/customer"
    body = CUSTOMER if method == "POST" else None
    async with session.request(method, path, headers=headers, json=body) as response:
        await response.read()
        return response.status


def test_the_rate_limit_keeps_one_bucket_per_tenant() -> None:
    injector = FaultInjector(FaultConfig(rate_limit=0.01, burst=2))
    assert [injector.rate_limited("a") for _ in range(2)] == [None, None]
    refused = injector.rate_limited("a")
    assert refused is not None
    assert refused.status == 429
    # another tenant's bucket is full: its requests are not counted against the first one's
    assert [injector.rate_limited("b") for _ in range(2)] == [None, None]
    assert injector.rate_limited("b") is not None
    assert injector.rate_limited("a") is not None


async def test_each_key_is_limited_on_its_own() -> None:
    async with (
        Sandbox(api_keys=[KEY_A, KEY_B], faults=SLOW_LIMIT) as sandbox,
        aiohttp.ClientSession(sandbox.url) as session,
    ):
        a_first = [await _status(session, KEY_A) for _ in range(4)]
        b_then = [await _status(session, KEY_B) for _ in range(4)]
        a_again = await _status(session, KEY_A)
    assert a_first == [200, 200, 200, 429]
    assert b_then == [200, 200, 200, 429]  # B's burst was untouched by A's requests
    assert a_again == 429


async def test_a_fault_script_advances_per_key() -> None:
    script = {"x-sandbox-fault": "503,ok", "Idempotency-Key": "same"}
    async with (
        Sandbox(api_keys=[KEY_A, KEY_B]) as sandbox,
        aiohttp.ClientSession(sandbox.url, headers=script) as session,
    ):
        seen = [await _status(session, key) for key in (KEY_A, KEY_B, KEY_A, KEY_B)]
    assert seen == [503, 503, 200, 200]


async def test_one_key_keeps_the_one_bucket_it_always_had() -> None:
    async with (
        Sandbox(api_key=KEY_A, faults=SLOW_LIMIT) as sandbox,
        aiohttp.ClientSession(sandbox.url) as session,
    ):
        # requests without an accepted key share a bucket of their own (answered 401 past it)
        assert [await _status(session, None) for _ in range(4)] == [401, 401, 401, 429]
        assert [await _status(session, KEY_A) for _ in range(4)] == [200, 200, 200, 429]


async def test_the_records_and_counters_of_one_key_are_invisible_to_another() -> None:
    async with Sandbox(api_keys=[KEY_A, KEY_B]) as sandbox:
        assert sandbox.api_key == KEY_A
        assert sandbox.api_keys == (KEY_A, KEY_B)
        async with (
            AsyncFinalPOS(api_key=KEY_A, base_url=sandbox.url) as a,
            aiohttp.ClientSession(sandbox.url, headers={"x-api-key": KEY_B}) as b,
        ):
            created = await a.customers.create(email="a@example.com", first_name="A", last_name="A")
            async with b.get("/v1/api/customers") as response:
                assert await response.json() == []
            for method in ("GET", "PUT", "DELETE"):
                body = {} if method == "PUT" else None
                async with b.request(method, f"/v1/api/customer/{created.id}", json=body) as r:
                    assert r.status == 404, method
            async with b.post("/v1/api/customer", json=CUSTOMER) as response:
                b_customer = await response.json()
            assert b_customer["companyId"] != created.company_id
            assert [c.id async for c in a.customers.list()] == [created.id]
            # a generated counter (outlet sequenceNumber) counts per account as well
            async with b.post("/v1/api/outlet", json=_outlet()) as response:
                assert (await response.json())["sequenceNumber"] == 1
            async with b.post("/v1/api/outlet", json=_outlet(), headers={"x-api-key": KEY_A}) as r:
                assert (await r.json())["sequenceNumber"] == 1
        # the first key's records keep the bare collection name: a one-key file reads the same
        assert [r["id"] for r in sandbox.storage.list("CustomerDto", 0, None)] == [created.id]


def test_bad_key_lists_are_refused_with_the_way_on() -> None:
    with pytest.raises(ValueError, match="not both"):
        Sandbox(api_key=KEY_A, api_keys=[KEY_B])
    with pytest.raises(ValueError, match="given twice"):
        Sandbox(api_keys=[KEY_A, KEY_A])
    with pytest.raises(ValueError, match="at least one"):
        Sandbox(api_keys=[])
    with pytest.raises(ValueError, match="not a string"):
        Sandbox(api_keys=KEY_A)
    with pytest.raises(ValueError, match="non-empty"):
        Sandbox(api_keys=[KEY_A, " "])


def test_the_help_says_how_to_give_several_keys_and_a_request_log(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "repeat it for several keys, each its own account" in text
    assert "--request-log FILE" in text
    assert "the rate limit and burst apply to each API key" in text


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_the_request_log_has_a_line_per_request_as_soon_as_it_is_answered(
    tmp_path: Path,
) -> None:
    log = tmp_path / "requests.jsonl"
    async with (
        Sandbox(api_keys=[KEY_A, KEY_B], faults=SLOW_LIMIT, request_log=log) as sandbox,
        aiohttp.ClientSession(sandbox.url) as session,
    ):
        expected: list[tuple[str | None, str, int]] = []
        for key, method in [(KEY_A, "POST"), (KEY_B, "GET"), (None, "GET"), ("sk_wrong", "GET")]:
            status = await _status(session, key, method)
            expected.append((key, method, status))
            assert len(_lines(log)) == len(expected)  # written before the answer went out
        for _ in range(3):
            expected.append((KEY_A, "POST", await _status(session, KEY_A, "POST")))
        headers = {"x-api-key": KEY_B, "x-sandbox-fault": "reset"}
        with pytest.raises(aiohttp.ClientError):
            async with session.post("/v1/api/customer", json=CUSTOMER, headers=headers):
                pass
        expected.append((KEY_B, "POST", 0))
        async with AsyncFinalPOS(api_key=KEY_A, base_url=sandbox.url) as client:
            a_fingerprint = client.credentials_fingerprint
        async with AsyncFinalPOS(api_key=KEY_B, base_url=sandbox.url) as client:
            b_fingerprint = client.credentials_fingerprint
    lines = _lines(log)
    prints = {KEY_A: a_fingerprint, KEY_B: b_fingerprint}
    assert [(line["key"], line["method"], line["status"]) for line in lines] == [
        (None if key is None else prints.get(key, line["key"]), method, status)
        for (key, method, status), line in zip(expected, lines, strict=True)
    ]
    assert [s for _, _, s in expected] == [201, 200, 401, 401, 201, 201, 429, 0]
    assert lines[3]["key"] not in (None, a_fingerprint, b_fingerprint)  # a refused key's print
    assert {line["path"] for line in lines} == {"/v1/api/customer", "/v1/api/customers"}
    times = [line["t"] for line in lines]
    assert times == sorted(times)
    assert all(isinstance(t, float) for t in times)
    text = log.read_text()
    for secret in (KEY_A, KEY_B, "sk_wrong"):
        assert secret not in text


def test_the_readme_says_how_to_run_tenants_and_read_the_request_log(tmp_path: Path) -> None:
    text = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert "**Several tenants.** `Sandbox(api_keys=[" in text
    assert "`--api-key sk_a --api-key sk_b`" in text
    assert "the rate limit is a token bucket per API key" in text
    assert "`request_log=` / `--request-log FILE` appends one JSON line per request" in text
    # every field the log writes is one the README names
    log = RequestLog(tmp_path / "log.jsonl")
    log.write(at=1.0, fingerprint="f", method="GET", path="/", status=200)
    log.close()
    for field in json.loads((tmp_path / "log.jsonl").read_text()):
        assert f'"{field}":' in text, field
