"""`api_key=` as a function, sync or async (issue 24, "Key rotation").

The function is asked for the key when the client opens and again after a 401; a call refused
with a 401 is repeated exactly once, with the new key, when the key changed, and the 401 stands
when it did not. Calls refused together share one ask. Every test counts the requests a server
received and the key each carried, through the `MockTransport` seam (a real aiohttp server where
the session's own default headers are under test).
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from conftest import aiohttp_transport, serve_locally

from finalpos_async import (
    APITimeoutError,
    AsyncFinalPOS,
    AuthenticationError,
    FinalPOSError,
    MockTransport,
    Request,
    TransportResponse,
)
from finalpos_async.bulk import ItemStatus
from finalpos_sync import FinalPOS

OLD = "sk_live_rotation_OLD_key_Aa11Bb22"
NEW = "sk_live_rotation_NEW_key_Cc33Dd44"
LATER = "sk_live_rotation_LATER_key_Ee55Ff66"
URL = "https://rotation.invalid"
DEADLINE = 30.0  # for waits on events that must come at once; only a broken client reaches it


@attrs.define
class KeyServer:
    """Accepts only `valid`; records (method, path, key) per request. With `hold` set, the first
    `hold` requests wait until all of them have arrived (a burst of calls in flight together)."""

    valid: str = OLD
    seen: list[tuple[str, str, str]] = attrs.field(factory=list)
    idempotency_keys: list[str | None] = attrs.field(factory=list)
    hold: int = 0
    arrived: asyncio.Event = attrs.field(factory=asyncio.Event)

    @property
    def keys(self) -> list[str]:
        """The key each request carried, in order."""
        return [key for _, _, key in self.seen]

    async def handle(self, request: Request) -> TransportResponse:
        key = str(request.headers.get("x-api-key", ""))
        self.seen.append((request.method, request.url.removeprefix(URL), key))
        self.idempotency_keys.append(request.idempotency_key)
        if self.hold:
            if len(self.seen) >= self.hold:
                self.hold = 0
                self.arrived.set()
            await asyncio.wait_for(self.arrived.wait(), DEADLINE)
        if key != self.valid:
            body = {"statusCode": 401, "message": "Invalid API key", "error": "Unauthorized"}
            return TransportResponse(401, json=body)
        return TransportResponse(200, json={"ok": True})

    def client(self, api_key: Any, **kwargs: Any) -> AsyncFinalPOS:
        kwargs.setdefault("transport", MockTransport(self.handle))
        return AsyncFinalPOS(api_key, base_url=URL, backoff_base=0.001, **kwargs)


@attrs.define
class Keys:
    """A key function over a list of keys: each ask returns the next one (the last repeats)."""

    keys: list[str]
    asked: int = 0

    def __call__(self) -> str:
        self.asked += 1
        return self.keys[min(self.asked, len(self.keys)) - 1]

    async def asynchronously(self) -> str:
        await asyncio.sleep(0)  # a real await: the client must wait for it
        return self()


# ------------------------------------------------------------------ rotation after a 401


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_rotated_key_is_picked_up_after_a_401_with_exactly_one_repeat(kind: str) -> None:
    server, keys = KeyServer(valid=OLD), Keys([OLD, NEW])
    function: Callable[[], str | Awaitable[str]] = keys if kind == "sync" else keys.asynchronously
    async with server.client(function) as client:
        assert keys.asked == 0  # not asked by the constructor
        assert await client.request("GET", "/v1/api/customers") == {"ok": True}
        assert keys.asked == 1  # asked when the client opened
        server.valid = NEW  # the key is rotated on the server
        raw = await client.send("POST", "/v1/api/customers", json={"a": 1})
        assert raw.json() == {"ok": True}
        assert raw.attempts == 2
        assert await client.request("GET", "/v1/api/customers") == {"ok": True}
    assert server.seen == [
        ("GET", "/v1/api/customers", OLD),
        ("POST", "/v1/api/customers", OLD),  # 401
        ("POST", "/v1/api/customers", NEW),  # the one repeat, with the new key
        ("GET", "/v1/api/customers", NEW),  # later calls carry it at once
    ]
    # The repeat is the same request: its idempotency key too (a 401 was never processed).
    assert server.idempotency_keys[1] is not None
    assert server.idempotency_keys[1] == server.idempotency_keys[2]
    assert keys.asked == 2  # at open, then once after the 401


async def test_an_unchanged_key_lets_the_401_stand_without_a_repeat() -> None:
    server, keys = KeyServer(valid="sk_live_nobody_has_this_key_0000"), Keys([OLD])
    async with server.client(keys) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.request("GET", "/v1/api/customers")
    assert server.keys == [OLD]  # one request: the function gave the same key again
    assert caught.value.attempts == 1
    assert keys.asked == 2  # at open, and after the 401


async def test_a_call_is_repeated_once_at_most_even_when_the_key_changes_again() -> None:
    server, keys = KeyServer(valid="sk_live_nobody_has_this_key_0000"), Keys([OLD, NEW, LATER])
    async with server.client(keys, max_retries=0) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.request("DELETE", "/v1/api/customers/c1")
    # max_retries=0 does not stop the repeat (it is not a retry), and there is only one.
    assert server.keys == [OLD, NEW]
    assert caught.value.attempts == 2
    assert not caught.value.maybe_processed


async def test_a_fixed_key_never_repeats_a_401() -> None:
    server = KeyServer(valid=NEW)
    async with server.client(OLD) as client:
        with pytest.raises(AuthenticationError):
            await client.request("GET", "/v1/api/customers")
    assert server.keys == [OLD]


async def test_calls_refused_together_ask_the_function_once() -> None:
    server, keys = KeyServer(valid=OLD, hold=50), Keys([OLD, NEW])
    async with server.client(keys.asynchronously, pool_limit=100) as client:
        # 50 first calls together: one ask at open.
        first = await asyncio.gather(*(client.request("GET", f"/a/{n}") for n in range(50)))
        assert first == [{"ok": True}] * 50
        assert keys.asked == 1
        # The key rotates; 50 calls in flight together all get a 401: one ask between them.
        server.valid, server.hold = NEW, 50
        server.arrived.clear()
        second = await asyncio.gather(*(client.request("GET", f"/b/{n}") for n in range(50)))
        assert second == [{"ok": True}] * 50
        assert keys.asked == 2
    assert server.keys == [OLD] * 50 + [OLD] * 50 + [NEW] * 50  # each /b call: 401, one repeat
    assert sorted(path for _, path, key in server.seen if key == NEW) == sorted(
        f"/b/{n}" for n in range(50)
    )


async def test_calls_refused_together_with_an_unchanged_key_ask_once_and_fail() -> None:
    server, keys = KeyServer(valid=OLD), Keys([OLD])
    async with server.client(keys) as client:
        await client.request("GET", "/warm")
        server.valid, server.hold = NEW, 20
        results = await asyncio.gather(
            *(client.request("GET", f"/b/{n}") for n in range(20)), return_exceptions=True
        )
    assert all(isinstance(result, AuthenticationError) for result in results)
    assert keys.asked == 2  # at open, then one ask for the whole burst
    assert len(server.seen) == 21  # no call was repeated


async def test_a_with_options_copy_follows_the_rotation_and_one_with_its_own_key_does_not() -> None:
    server, keys = KeyServer(valid=OLD), Keys([OLD, NEW])
    async with server.client(keys) as client:
        follower = client.with_options(timeout=5.0)
        fixed = client.with_options(api_key=LATER)
        await follower.request("GET", "/follower")
        server.valid = NEW
        await client.request("GET", "/root")  # 401, then NEW
        await follower.request("GET", "/follower")  # built its headers again: NEW at once
        with pytest.raises(AuthenticationError):
            await fixed.request("GET", "/fixed")  # its own key: the 401 stands
    assert server.seen == [
        ("GET", "/follower", OLD),
        ("GET", "/root", OLD),
        ("GET", "/root", NEW),
        ("GET", "/follower", NEW),
        ("GET", "/fixed", LATER),
    ]
    assert keys.asked == 2


async def test_the_session_default_headers_carry_the_rotated_key() -> None:
    """The owning client's headers live on the aiohttp session: a rotation replaces them there,
    so plain calls neither send the old key nor pay for passing the new one per call."""
    valid = [OLD]
    got: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        got.append(request.headers.get("x-api-key", ""))
        if got[-1] != valid[0]:
            return web.json_response({"statusCode": 401, "message": "no"}, status=401)
        return web.json_response({"ok": True})

    keys = Keys([OLD, NEW])
    release = asyncio.Event()
    async with serve_locally(handler, "/{tail:.*}", release, shutdown_timeout=1.0) as url:
        client = AsyncFinalPOS(keys, base_url=url)
        async with client:
            await client.request("GET", "/one")
            session = aiohttp_transport(client).session
            assert session is not None
            assert session.headers["x-api-key"] == OLD
            valid[0] = NEW
            await client.request("GET", "/two")  # 401, then repeated with the new key
            await client.request("GET", "/three")  # the next call replaces the session's headers
            assert session.headers["x-api-key"] == NEW
            assert aiohttp_transport(client).session is session  # the same pool
            await client.request("POST", "/four", json={"a": 1})
    assert got == [OLD, OLD, NEW, NEW, NEW]


async def test_waiting_for_a_new_key_stays_within_the_calls_deadline() -> None:
    server, asked = KeyServer(valid=OLD), [0]
    never = asyncio.Event()

    async def stuck_after_the_first() -> str:
        asked[0] += 1
        if asked[0] > 1:
            await never.wait()  # a secrets manager that does not answer
        return OLD

    async with server.client(stuck_after_the_first) as client:
        await client.request("GET", "/one")
        server.valid = NEW
        with pytest.raises(APITimeoutError) as caught:
            await asyncio.wait_for(client.request("GET", "/two", deadline=0.2), DEADLINE)
    assert caught.value.kind == "deadline"
    assert "api_key function" in caught.value.message
    assert isinstance(caught.value.last_error, AuthenticationError)
    assert server.keys == [OLD, OLD]  # nothing sent while it waited


async def test_waiting_for_the_first_key_stays_within_the_calls_deadline() -> None:
    server, answer = KeyServer(valid=OLD), asyncio.Event()
    asked = [0]

    async def slow_to_start() -> str:
        asked[0] += 1
        await answer.wait()  # a secrets manager that does not answer (yet)
        return OLD

    async with server.client(slow_to_start) as client:
        with pytest.raises(APITimeoutError) as caught:
            await asyncio.wait_for(client.request("GET", "/one", deadline=0.2), DEADLINE)
        assert caught.value.kind == "deadline"
        assert "api_key function's first key" in caught.value.message
        assert caught.value.url == URL + "/one"
        assert server.keys == []  # nothing was sent
        # The ask went on: once it answers, the next call uses its key without asking again.
        answer.set()
        assert await client.request("GET", "/two") == {"ok": True}
    assert server.keys == [OLD]
    assert asked == [1]


async def test_the_wait_for_the_first_key_counts_against_the_deadline() -> None:
    # 0.2 s for the first key, then a server that takes 0.2 s: 0.4 s in all, past a 0.3 s
    # deadline (each wait alone would fit in it).
    async def slow_key() -> str:
        await asyncio.sleep(0.2)
        return OLD

    async def slow_server(request: Request) -> TransportResponse:
        await asyncio.sleep(0.2)
        return TransportResponse(200, json={"ok": True})

    server = KeyServer(valid=OLD)
    async with server.client(slow_key, transport=MockTransport(slow_server)) as client:
        with pytest.raises(APITimeoutError) as caught:
            await client.request("GET", "/one", deadline=0.3)
    assert caught.value.kind in {"deadline", "read"}


# ------------------------------------------------------------------ the sync client


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_sync_client_takes_a_key_function(kind: str) -> None:
    server, keys = KeyServer(valid=OLD), Keys([OLD, NEW])
    function: Callable[[], str | Awaitable[str]] = keys if kind == "sync" else keys.asynchronously
    with FinalPOS(function, base_url=URL, transport=MockTransport(server.handle)) as client:
        assert client.request("GET", "/one") == {"ok": True}
        server.valid = NEW
        assert client.request("GET", "/two") == {"ok": True}
        assert client.request("GET", "/three") == {"ok": True}
    assert server.keys == [OLD, OLD, NEW, NEW]
    assert keys.asked == 2


# ------------------------------------------------------------------ a function that fails


async def test_a_function_that_raises_names_api_key_and_the_next_call_asks_again() -> None:
    server = KeyServer(valid=OLD)
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("secrets manager unreachable")
        return OLD

    async with server.client(flaky) as client:
        with pytest.raises(FinalPOSError) as caught:
            await client.request("GET", "/v1/api/customers")
        message = str(caught.value)
        assert "api_key" in message
        assert "flaky()" in message
        assert "raised ConnectionError" in message
        assert "return the API key as a str (the next call asks it again)" in message  # the fix
        assert isinstance(caught.value.__cause__, ConnectionError)
        assert server.seen == []  # nothing was sent without a key
        assert await client.request("GET", "/v1/api/customers") == {"ok": True}
    assert len(attempts) == 2


async def test_a_function_that_raises_after_a_401_surfaces_that_error() -> None:
    server, calls = KeyServer(valid=OLD), [0]

    async def get_key() -> str:
        calls[0] += 1
        if calls[0] > 1:
            raise TimeoutError("vault timed out")
        return OLD

    async with server.client(get_key) as client:
        await client.request("GET", "/one")
        server.valid = NEW
        with pytest.raises(FinalPOSError, match=r"api_key: the key function .*get_key\(\)"):
            await client.request("GET", "/two")
    assert server.keys == [OLD, OLD]


@pytest.mark.parametrize(
    ("returned", "error", "says"),
    [
        (None, TypeError, "must be a str, got NoneType"),
        (b"sk_live_bytes_key", TypeError, "must be a str, got bytes"),
        ("", ValueError, "must not be empty"),
        (f" {OLD}\n", ValueError, "spaces or line breaks around it"),
    ],
    ids=["none", "bytes", "empty", "padded"],
)
async def test_a_function_returning_no_usable_key_is_an_error_naming_api_key(
    returned: object, error: type[Exception], says: str
) -> None:
    server = KeyServer(valid=OLD)

    def bad_key() -> Any:
        return returned

    async with server.client(bad_key) as client:
        with pytest.raises(error) as caught:
            await client.request("GET", "/v1/api/customers")
    message = str(caught.value)
    assert message.startswith("api_key (the key ")
    assert "bad_key()" in message
    assert says in message
    assert message.endswith("bad_key() return the API key as a str")  # the fix
    assert OLD not in message
    assert server.seen == []


def test_sandbox_true_and_a_key_function_exclude_each_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="api_key as a function and sandbox=True"):
        AsyncFinalPOS(Keys([OLD]), sandbox=True)
    # FINALPOS_SANDBOX=1 turns an app's client to the sandbox, which has its own key.
    monkeypatch.setenv("FINALPOS_SANDBOX", "1")
    keys = Keys([OLD])
    client = AsyncFinalPOS(keys)
    assert client.is_embedded_sandbox
    assert keys.asked == 0


# ------------------------------------------------------------------ masked everywhere


async def test_the_keys_never_render_in_a_repr_a_log_or_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="finalpos")
    server, keys = KeyServer(valid=OLD), Keys([OLD, NEW, NEW])

    async def echo(request: Request) -> TransportResponse:
        response = await server.handle(request)
        if response.status == 401:  # a server that echoes the key it refused
            key = str(request.headers["x-api-key"])
            body = {"statusCode": 401, "message": f"bad key {key}"}
            return TransportResponse(401, headers={"X-Echo-Key": key}, json=body)
        return response

    client = server.client(keys, transport=MockTransport(echo))
    async with client:
        await client.request("GET", "/one")
        server.valid = NEW
        await client.request("GET", "/two")  # rotated: 401 echoing OLD, then NEW
        server.valid = LATER
        # NEW again from the function: the 401 stands. Caught in a frame holding no key.
        error = await _failure(client.request("GET", "/three"))
        renderings = [
            repr(client),
            repr(client.with_options(timeout=1.0)),
            repr(error),
            str(error),
            repr(error.response.headers),
            error.response.text,
            "".join(
                traceback.TracebackException.from_exception(error, capture_locals=True).format()
            ),
            pickle.loads(pickle.dumps(error)).message,
            caplog.text,
        ]
    assert server.keys == [OLD, OLD, NEW, NEW]
    assert "repeating it once with the new key" in caplog.text
    for text in renderings:
        assert OLD not in text, text
        assert NEW not in text, text
    assert "sk_…Dd44" in str(error)  # the mask shows where the key was echoed


async def _failure(call: Awaitable[object]) -> AuthenticationError:
    try:
        await call
    except AuthenticationError as exc:
        return exc
    raise AssertionError("the call did not fail with a 401")


# ------------------------------------------------------------------ the fingerprint and bulk


async def test_the_fingerprint_stays_the_same_across_rotations_and_clients() -> None:
    server, keys = KeyServer(valid=OLD), Keys([OLD, NEW])
    async with server.client(keys) as client:
        before = client.credentials_fingerprint  # known before the first call
        await client.request("GET", "/one")
        server.valid = NEW
        await client.request("GET", "/two")
        assert client.credentials_fingerprint == before
        assert server.client(Keys([LATER])).credentials_fingerprint == before
        assert server.client(OLD).credentials_fingerprint != before  # a fixed key is itself
        assert client.with_options(api_key=OLD).credentials_fingerprint != before


async def test_a_bulk_journal_resumes_across_a_rotation(tmp_path: Path) -> None:
    """A run whose key rotates half-way finishes every row; a later run whose function returns
    yet another key resumes the journal (no `rotated_credentials=True` needed) and skips them."""
    journal = tmp_path / "things.journal"
    server = KeyServer(valid=OLD)

    def operation(client: AsyncFinalPOS) -> Callable[..., Awaitable[Any]]:
        async def create(*, name: str, idempotency_key: str, retry_unsafe: bool) -> Any:
            if name == "row-5":
                server.valid = NEW  # the key rotates in the middle of the run
            return await client.request(
                "POST",
                "/v1/api/things",
                json={"name": name},
                idempotency_key=idempotency_key,
                retry_unsafe=retry_unsafe,
            )

        return create

    rows = [{"name": f"row-{n}"} for n in range(10)]
    async with server.client(Keys([OLD, NEW])) as client:
        report = await client.bulk.run(
            operation(client), rows, journal=journal, operation_name="things.create", concurrency=1
        )
    assert (report.succeeded, report.failed) == (10, 0)
    # Rows 0..5 went with the old key (row 5 got a 401), then row 5's repeat and rows 6..9.
    assert server.keys == [OLD] * 6 + [NEW] * 5
    server.valid, sent = LATER, len(server.seen)
    async with server.client(Keys([LATER])) as later:
        results = [
            result.status
            async for result in later.bulk.run(
                operation(later), rows, journal=journal, operation_name="things.create"
            )
        ]
    assert results == [ItemStatus.SKIPPED] * 10
    assert len(server.seen) == sent  # nothing sent again


def test_the_readme_documents_key_rotation() -> None:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = text.split("### Key rotation", 1)[1].split("\n## ", 1)[0]
    for phrase in (
        "asked for the key when the client opens",
        "repeated once",
        "single ask",
        "credentials_fingerprint",
        "a 401 means the request was not processed",
    ):
        assert phrase in section, phrase
