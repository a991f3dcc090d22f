"""Fault injection: scripted sequences, a seeded fault rate, rate limiting; all off by default."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from finalpos_async.sandbox import FaultConfig, Sandbox, parse_faults
from finalpos_async.sandbox._faults import Fault, FaultInjector

SCRIPT = "x-sandbox-fault"


async def outcome(http: aiohttp.ClientSession, headers: dict[str, str] | None = None) -> str:
    """POST an account (POST: aiohttp never retries it by itself after a reset)."""
    try:
        async with http.post("/v1/api/account", json={}, headers=headers) as response:
            await response.read()
            return str(response.status)
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
        return "reset"


async def test_faults_are_off_by_default(http: aiohttp.ClientSession) -> None:
    assert [await outcome(http) for _ in range(20)] == ["201"] * 20


async def test_a_scripted_sequence_is_seen_exactly_then_starts_over(
    http: aiohttp.ClientSession,
) -> None:
    headers = {SCRIPT: "503,500,429,ok"}
    seen = [await outcome(http, headers) for _ in range(6)]
    assert seen == ["503", "500", "429", "201", "503", "500"]


async def test_scripts_advance_per_key(http: aiohttp.ClientSession) -> None:
    a = {SCRIPT: "503,ok", "x-sandbox-fault-key": "a"}
    b = {SCRIPT: "503,ok", "x-sandbox-fault-key": "b"}
    assert [await outcome(http, a), await outcome(http, b), await outcome(http, a)] == [
        "503",
        "503",
        "201",
    ]


async def test_scripted_statuses_carry_the_api_error_shape_and_retry_after(
    http: aiohttp.ClientSession,
) -> None:
    async with http.get("/v1/api/customers", headers={SCRIPT: "503:2"}) as response:
        body = json.loads(await response.text())
        assert response.status == 503
        assert response.headers["Retry-After"] == "2"
    assert body == {
        "statusCode": 503,
        "message": "Sandbox fault injected: HTTP 503.",
        "error": "Service Unavailable",
    }


@pytest.mark.finalpos_sandbox(faults=FaultConfig(retry_after=0.25))
async def test_a_scripted_429_uses_the_configured_retry_after(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/api/customers", headers={SCRIPT: "429"}) as response:
        assert response.status == 429
        # Retry-After allows whole seconds only: rounded up there, exact in retry-after-ms.
        assert response.headers["Retry-After"] == "1"
        assert response.headers["retry-after-ms"] == "250"


async def test_a_reset_step_drops_the_connection(http: aiohttp.ClientSession) -> None:
    assert [await outcome(http, {SCRIPT: "reset,ok"}) for _ in range(2)] == ["reset", "201"]


async def test_a_delay_step_holds_the_answer_past_the_client_timeout(
    http: aiohttp.ClientSession,
) -> None:
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        async with http.get(
            "/v1/api/customers",
            headers={SCRIPT: "delay:0.5,ok"},
            timeout=aiohttp.ClientTimeout(total=0.1),
        ):
            pass
    assert time.monotonic() - started < 0.45
    async with http.get("/v1/api/customers", headers={SCRIPT: "delay:0.5,ok"}) as response:
        assert response.status == 200


async def test_a_malformed_script_is_a_400_naming_the_header(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/api/customers", headers={SCRIPT: "503,sometimes"}) as response:
        body = await response.json()
    assert response.status == 400
    assert "x-sandbox-fault" in body["message"]
    assert "sometimes" in body["message"]


async def _outcomes_with_seed(seed: int) -> list[str]:
    faults = FaultConfig(rate=0.5, kinds=("500", "502", "503", "reset"))
    async with (
        Sandbox(faults=faults, seed=seed) as sandbox,
        aiohttp.ClientSession(sandbox.url, headers={"x-api-key": sandbox.api_key}) as session,
    ):
        return [await outcome(session) for _ in range(60)]


async def test_the_seeded_fault_rate_gives_the_same_outcomes_twice() -> None:
    first = await _outcomes_with_seed(7)
    second = await _outcomes_with_seed(7)
    assert first == second
    assert {"201", "500", "502", "503", "reset"} <= set(first)
    assert await _outcomes_with_seed(8) != first


@pytest.mark.finalpos_sandbox(faults="rate-limit=0.5,burst=3,retry-after=0.05")
async def test_the_rate_limit_answers_429_with_retry_after(http: aiohttp.ClientSession) -> None:
    statuses = []
    retry_after = None
    for _ in range(5):
        async with http.get("/v1/api/customers") as response:
            statuses.append(response.status)
            if response.status == 429:
                retry_after = response.headers["Retry-After"]
                body = await response.json()
                assert body["error"] == "Too Many Requests"
    assert statuses[:3] == [200, 200, 200]
    assert 429 in statuses[3:]
    # the time until the next token (2 s at 0.5 per second), which is above the configured 0.05
    assert retry_after is not None
    assert 1.0 < float(retry_after) <= 2.0


def test_fault_text_is_parsed_and_bad_text_names_the_problem() -> None:
    config = parse_faults("rate=0.1,kinds=500+reset,delay=0.2,retry-after=0,rate-limit=5,seed=3")
    assert config == FaultConfig(
        rate=0.1, kinds=("500", "reset"), delay=0.2, retry_after=0.0, rate_limit=5.0, seed=3
    )
    with pytest.raises(ValueError, match="unknown key 'speed'"):
        parse_faults("speed=3")
    with pytest.raises(ValueError, match="unknown fault kind 'boom'"):
        parse_faults("kinds=500+boom")
    with pytest.raises(ValueError, match="between 0 and 1"):
        parse_faults("rate=2")


async def test_a_reset_after_step_applies_the_request_then_drops_the_answer(
    finalpos_sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    headers = {SCRIPT: "reset-after,ok", "Idempotency-Key": "create-1"}
    assert await outcome(http, headers) == "reset"
    assert len(finalpos_sandbox.storage.list("AccountDto", 0, None)) == 1  # it did happen
    async with http.post("/v1/api/account", json={}, headers=headers) as response:
        assert response.status == 201
        assert response.headers["Idempotent-Replayed"] == "true"
    assert len(finalpos_sandbox.storage.list("AccountDto", 0, None)) == 1  # and only once


async def test_a_status_after_step_without_a_key_shows_why_keys_matter(
    finalpos_sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    headers = {SCRIPT: "503-after,ok"}
    assert [await outcome(http, headers), await outcome(http, headers)] == ["503", "201"]
    assert len(finalpos_sandbox.storage.list("AccountDto", 0, None)) == 2


async def test_bad_seconds_in_a_step_are_named(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/api/customers", headers={SCRIPT: "delay:soon"}) as response:
        body = await response.json()
    assert response.status == 400
    assert "delay:soon" in body["message"]


CUSTOMER = {"email": "ada@example.com", "firstName": "Ada", "lastName": "Lovelace"}


async def test_a_misfit_step_creates_the_record_and_answers_201_without_its_id(
    finalpos_sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    headers = {SCRIPT: "misfit,ok", "Idempotency-Key": "create-misfit"}
    async with http.post("/v1/api/customer", json=CUSTOMER, headers=headers) as response:
        assert response.status == 201
        assert response.content_type == "application/json"
        misfit = await response.json()
    assert "id" not in misfit
    assert misfit["email"] == "ada@example.com"
    assert misfit["createdAt"]  # the rest of the record is there
    stored = finalpos_sandbox.storage.list("CustomerDto", 0, None)
    assert len(stored) == 1  # it did take effect
    assert {k: v for k, v in stored[0].items() if k != "id"} == misfit
    # A retry under the same Idempotency-Key replays the record as created: id included.
    async with http.post("/v1/api/customer", json=CUSTOMER, headers=headers) as response:
        assert response.status == 201
        assert response.headers["Idempotent-Replayed"] == "true"
        assert (await response.json())["id"] == stored[0]["id"]
    assert len(finalpos_sandbox.storage.list("CustomerDto", 0, None)) == 1


@pytest.mark.finalpos_sandbox(faults="rate=1,kinds=misfit")
async def test_a_drawn_misfit_changes_the_2xx_answers_of_writes_only(
    finalpos_sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    async with http.post("/v1/api/customer", json=CUSTOMER) as response:
        assert response.status == 201
        assert "id" not in await response.json()
    (stored,) = finalpos_sandbox.storage.list("CustomerDto", 0, None)
    update = {"firstName": "Augusta"}
    async with http.put(f"/v1/api/customer/{stored['id']}", json=update) as response:
        assert response.status == 200
        body = await response.json()
        assert "id" not in body
        assert body["firstName"] == "Augusta"  # it took effect
    # Reads, and an error, are answered as they were.
    async with http.get(f"/v1/api/customer/{stored['id']}") as response:
        assert response.status == 200
        assert (await response.json())["id"] == stored["id"]
    async with http.get("/v1/api/customers") as response:
        assert response.status == 200
        assert [c["id"] for c in await response.json()] == [stored["id"]]
    async with http.post("/v1/api/customer", json={"email": 3}) as response:
        assert response.status == 400
        assert (await response.json())["statusCode"] == 400
    assert len(finalpos_sandbox.storage.list("CustomerDto", 0, None)) == 1


def test_misfit_is_a_fault_kind_and_a_step_without_an_after_or_seconds() -> None:
    assert parse_faults("rate=0.05,kinds=misfit+503").kinds == ("misfit", "503")
    with pytest.raises(ValueError, match="unknown fault kind 'misfit-after'"):
        parse_faults("kinds=misfit-after")
    injector = FaultInjector(FaultConfig())
    with pytest.raises(ValueError, match="unknown step 'misfit:2'"):
        injector.scripted("misfit:2", "k")
    with pytest.raises(ValueError, match="unknown step 'misfit-after'"):
        injector.scripted("misfit-after", "k")
    assert injector.scripted("misfit", "k") == Fault("misfit", after=True)
