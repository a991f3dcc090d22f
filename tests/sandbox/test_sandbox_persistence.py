"""`db=`: a sandbox restarted on the same SQLite file sees everything the first one stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from finalpos_async.sandbox import Sandbox

OUTLET = {
    "name": "Main Store",
    "address": "26 Federal Plaza",
    "city": "New York",
    "state": "NY",
    "country": "US",
    "postCode": "10278",
    "phone": "+12323232323",
}


async def _session_call(sandbox: Sandbox, method: str, path: str, **kwargs: Any) -> Any:
    async with (
        aiohttp.ClientSession(sandbox.url, headers={"x-api-key": sandbox.api_key}) as session,
        session.request(method, path, **kwargs) as response,
    ):
        return response.status, await response.json()


async def test_records_survive_a_restart_on_the_same_file(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.db"
    async with Sandbox(db=db) as first:
        status, outlet = await _session_call(first, "POST", "/v1/api/outlet", json=OUTLET)
        assert status == 201
        _, second_outlet = await _session_call(first, "POST", "/v1/api/outlet", json=OUTLET)
        status, _ = await _session_call(first, "DELETE", f"/v1/api/outlet/{second_outlet['id']}")
        assert status == 200
        await _session_call(first, "PUT", f"/v1/api/outlet/{outlet['id']}", json={"alias": "HQ"})
        _, replay_first = await _session_call(
            first, "POST", "/v1/api/outlet", json=OUTLET, headers={"Idempotency-Key": "k"}
        )
    assert not first.running

    async with Sandbox(db=db) as second:
        status, fetched = await _session_call(second, "GET", f"/v1/api/outlet/{outlet['id']}")
        assert status == 200
        assert fetched["alias"] == "HQ"
        assert fetched["sequenceNumber"] == 1
        status, listed = await _session_call(second, "GET", "/v1/api/outlets")
        assert [o["id"] for o in listed] == [outlet["id"], replay_first["id"]]
        # counters and idempotency keys are kept too
        _, third = await _session_call(second, "POST", "/v1/api/outlet", json=OUTLET)
        assert third["sequenceNumber"] == 4
        status, replay_second = await _session_call(
            second, "POST", "/v1/api/outlet", json=OUTLET, headers={"Idempotency-Key": "k"}
        )
        assert (status, replay_second) == (201, replay_first)


async def test_reset_forgets_everything(tmp_path: Path) -> None:
    async with Sandbox(db=tmp_path / "s.db") as sandbox:
        await _session_call(sandbox, "POST", "/v1/api/outlet", json=OUTLET)
        sandbox.reset()
        assert await _session_call(sandbox, "GET", "/v1/api/outlets") == (200, [])
