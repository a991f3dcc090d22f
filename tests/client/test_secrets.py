"""The API key never leaks, and TLS is verified unless the caller explicitly opts out.

At `FINALPOS_LOG=debug` (and every other logger at DEBUG too), across a run that exercises
success, retries and every error type, the key appears nowhere in: captured logs and stderr,
`repr()`/`str()` of clients, errors (with their chained causes and formatted tracebacks) and raw
responses, the CLI's output, the bulk journal file or the CLI's failed-rows file. A server that
echoes the key back in an error message gets it replaced by its mask in the error's text.

The run across every error keeps a real server on 127.0.0.1 (`scripted_server`): the chained
causes of a reset, a timeout and a refused connection are aiohttp's own exceptions, and those
are what must not carry the key; the echoed-key test needs no socket (`MockTransport`).
"""

from __future__ import annotations

import inspect
import logging
import pickle
import ssl
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner
from conftest import (
    HANG,
    RESET,
    ScriptedServer,
    ScriptedTransport,
    Step,
    aiohttp_transport,
    ok,
    status,
)
from self_signed import self_signed_tls

from finalpos_async import AsyncFinalPOS, FinalPOSError, _logging
from finalpos_async._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    RateLimitError,
    ResponseValidationError,
)
from finalpos_async.sandbox import Sandbox

SECRET = "sk_live_S3CR3T_a1b2c3d4e5f6"


def render(obj: object) -> str:
    """Everything an object shows when printed, logged or raised."""
    parts = [repr(obj), str(obj)]
    if isinstance(obj, BaseException):
        parts.extend(traceback.format_exception(type(obj), obj, obj.__traceback__))
        parts.append(repr(obj.args))
        for name in ("message", "text", "url", "body", "response", "last_error"):
            parts.append(repr(getattr(obj, name, None)))
        # The copy a worker process would receive.
        parts.append(repr(vars(pickle.loads(pickle.dumps(obj)))))
    return "\n".join(parts)


@pytest.fixture
def debug_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[pytest.LogCaptureFixture]:
    """`FINALPOS_LOG=debug` applied as a fresh process would (plus every logger at DEBUG)."""
    monkeypatch.setenv("FINALPOS_LOG", "debug")
    monkeypatch.setattr(_logging, "_configured", False)
    logger = logging.getLogger("finalpos")
    handlers, level = list(logger.handlers), logger.level
    logger.handlers.clear()
    caplog.set_level(logging.DEBUG)
    try:
        yield caplog
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)


def assert_no_secret(where: str, text: str) -> None:
    assert SECRET not in text, f"the API key leaked into {where}"
    # Not even a recognisable part of it (a truncated echo, say).
    assert SECRET[8:20] not in text, f"part of the API key leaked into {where}"


# ---------------------------------------------------------------- the client against scripts

ECHO_401 = {"statusCode": 401, "message": f"Invalid API key {SECRET}", "error": f"bad {SECRET}"}
HTML_502 = Step(502, "<html><title>502 Bad Gateway</title></html>", content_type="text/html")
RETRY_NOW = {"Retry_After": "0"}

SCENARIOS: list[tuple[str, list[Step], type[BaseException] | None]] = [
    ("ok", [ok({"id": "c1"})], None),
    ("retried 503 then ok", [status(503, **RETRY_NOW), status(503, **RETRY_NOW), ok()], None),
    ("400", [status(400)], APIStatusError),
    ("401", [status(401)], AuthenticationError),
    ("403", [status(403)], APIStatusError),
    ("404", [status(404)], APIStatusError),
    ("409", [status(409)], APIStatusError),
    ("422", [status(422, {"statusCode": 422, "message": ["email must be valid"]})], APIStatusError),
    ("429, then over the cap", [status(429, **RETRY_NOW), status(429, Retry_After="999")],
     RateLimitError),
    ("500", [status(500)], APIStatusError),
    ("HTML 502", [HTML_502], APIStatusError),
    ("reset", [RESET], APIConnectionError),
    ("read timeout", [HANG], APITimeoutError),
    ("bad 200 body", [Step(200, "<html>hi</html>", content_type="text/html")],
     ResponseValidationError),
    ("echoed key in 401", [status(401, ECHO_401)], AuthenticationError),
    ("echoed key in text", [Step(403, f"forbidden for key={SECRET}", content_type="text/plain")],
     APIStatusError),
]  # fmt: skip


async def test_the_key_is_nowhere_across_success_retries_and_every_error(
    scripted_server: ScriptedServer,
    debug_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown: list[tuple[str, str]] = []
    async with scripted_server.client(api_key=SECRET, timeout=0.2, deadline=5.0) as client:
        assert logging.getLogger("finalpos").isEnabledFor(logging.DEBUG)
        shown.append(("repr(client)", render(client)))
        shown.append(("repr(with_options copy)", render(client.with_options(max_retries=1))))
        for name, steps, expected in SCENARIOS:
            scripted_server.play(*steps)
            if expected is None:
                raw = await client.send("POST", "/v1/api/customer", json={"email": "a@b.c"})
                shown.append((f"{name}: raw response", render(raw)))
                shown.append((f"{name}: parsed", repr(raw.json())))
            else:
                with pytest.raises(expected) as info:
                    await client.request("POST", "/v1/api/customer", json={"a": "b"})
                shown.append((f"{name}: error", render(info.value)))
            # The key did travel where it belongs: in the x-api-key header.
            assert scripted_server.seen[-1].headers.get("x-api-key") == SECRET
        # The same through a typed method and the paginator.
        scripted_server.play(status(401))
        with pytest.raises(AuthenticationError) as typed:
            await client.customers.retrieve("c1")
        shown.append(("typed 401", render(typed.value)))
        scripted_server.play(Step(200, "nope", content_type="text/plain"))
        with pytest.raises(ResponseValidationError) as rv:
            await client.customers.list()
        shown.append(("paginator", render(rv.value)))
        shown.append(("repr(client) after use", render(client)))
    # The deadline error.
    async with scripted_server.client(api_key=SECRET, timeout=5.0, deadline=0.2) as client:
        scripted_server.play(HANG)
        with pytest.raises(APITimeoutError) as dl:
            await client.request("GET", "/v1/api/customers")
        assert dl.value.kind == "deadline"
        shown.append(("deadline", render(dl.value)))
    # Nothing listens on port 9: a connect error.
    async with AsyncFinalPOS(SECRET, base_url="http://127.0.0.1:9", max_retries=0) as client:
        with pytest.raises(APIConnectionError) as ce:
            await client.request("GET", "/v1/api/customers")
        shown.append(("connect error", render(ce.value)))

    logs = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in debug_logs.records
    )
    # Attempts and retry decisions were logged (so the check below means something).
    assert "attempt=" in logs
    assert "retrying" in logs
    captured = capsys.readouterr()
    for where, text in [*shown, ("logs", logs), ("stderr", captured.err), ("stdout", captured.out)]:
        assert_no_secret(where, text)


async def test_an_echoed_key_is_masked_but_the_message_stays_readable(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(status(401, {"statusCode": 401, "message": f"Invalid API key {SECRET}"}))
    async with scripted.client(api_key=SECRET) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.request("GET", "/v1/api/customers")
    assert info.value.message == "Invalid API key sk_…e5f6"  # the key's mask
    assert "sk_…e5f6" in str(info.value)
    assert SECRET not in info.value.text


def test_the_sync_client_does_not_show_the_key() -> None:
    from finalpos_sync import FinalPOS

    client = FinalPOS(SECRET, base_url="http://127.0.0.1:9", max_retries=0)
    try:
        assert_no_secret("repr(FinalPOS)", render(client))
        assert_no_secret("repr(copy)", render(client.with_options(timeout=1.0)))
        with pytest.raises(APIConnectionError) as info:
            client.request("GET", "/v1/api/customers")
        assert_no_secret("sync connect error", render(info.value))
    finally:
        client.close()


def test_missing_or_bad_keys_are_reported_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FINALPOS_API_KEY", raising=False)
    with pytest.raises(FinalPOSError, match="FINALPOS_API_KEY"):
        AsyncFinalPOS(base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="api_key has spaces or line breaks around it") as info:
        AsyncFinalPOS(SECRET + "\n", base_url="http://127.0.0.1:9")
    assert_no_secret("api_key error", str(info.value))
    with pytest.raises(ValueError, match="credentials") as url_error:
        AsyncFinalPOS("sk_other", base_url=f"https://user:{SECRET}@api.finalpos.com")
    assert_no_secret("base_url error", str(url_error.value))


# ------------------------------------------------------------- sandbox, bulk journal and CLI


@pytest.fixture
async def secret_sandbox() -> AsyncIterator[Sandbox]:
    """The sandbox accepting SECRET, failing a third of the requests (500, 503, reset)."""
    async with Sandbox(api_key=SECRET, faults="rate=0.3,kinds=500+503+reset", seed=7) as sb:
        yield sb


def journal_bytes(path: Path) -> bytes:
    """The journal file and its SQLite side files, byte for byte."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


async def test_the_bulk_journal_never_holds_the_key(
    secret_sandbox: Sandbox, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    journal = tmp_path / "import.journal"
    rows = [
        {"email": f"p{n}@example.com", "first_name": "P", "last_name": str(n)} for n in range(60)
    ]
    async with AsyncFinalPOS(
        SECRET, base_url=secret_sandbox.url, max_retries=1, backoff_base=0, backoff_cap=0
    ) as client:
        results = [r async for r in client.bulk.run(client.customers.create, rows, journal=journal)]
        assert len(results) == 60
        shown = [render(r) for r in results]
        # Some rows failed (faults) and their errors were journalled: the check has teeth.
        failed = [r for r in results if not r.ok]
        assert failed, "the fault rate produced no failure; the journal holds no error text"
    data = journal_bytes(journal)
    assert b"p0@example.com" in data or b"idempotency" in data or len(data) > 0
    assert SECRET.encode() not in data
    assert SECRET[8:20].encode() not in data
    for text in shown:
        assert_no_secret("bulk result", text)
    logs = "\n".join(r.getMessage() for r in debug_logs.records)
    assert_no_secret("logs", logs)


@pytest.fixture
def threaded_sandbox() -> Iterator[Sandbox]:
    with Sandbox(api_key=SECRET, faults="rate=0.2,kinds=503", seed=3).run_in_thread() as sb:
        yield sb


def test_the_cli_never_prints_the_key(
    threaded_sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from finalpos_async.cli._app import cli

    monkeypatch.setenv("FINALPOS_LOG", "debug")
    monkeypatch.setattr(_logging, "_configured", False)
    source = tmp_path / "people.csv"
    source.write_text(
        "email,first_name,last_name\n"
        + "".join(f"c{n}@example.com,C,{n}\n" for n in range(20))
        + "not-an-email,,\n"
    )
    base = ["--base-url", threaded_sandbox.url, "--max-retries", "1"]
    runs = [
        ["--api-key", SECRET, *base, "import", "customers", str(source)],
        ["--api-key", SECRET, *base, "export", "customers"],
        ["--api-key", SECRET, *base, "get", "customers", "nope/../x"],
        ["--api-key", SECRET, *base, "delete", "customers", "missing"],
        ["--api-key", SECRET + "x", *base, "export", "customers"],  # 401
        ["--api-key", SECRET, "--base-url", "http://127.0.0.1:9", "get", "customers", "c1"],
    ]
    outputs = []
    try:
        for args in runs:
            result = CliRunner().invoke(cli, args)
            outputs.append(" ".join(args[2:]) + "\n" + result.output + repr(result.exception))
    finally:
        logger = logging.getLogger("finalpos")
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    assert "401" in outputs[4] or "Invalid API key" in outputs[4]
    captured = capsys.readouterr()
    for text in [*outputs, captured.err, captured.out]:
        assert_no_secret("CLI output", text)
    for path in tmp_path.iterdir():
        assert SECRET.encode() not in path.read_bytes(), f"the API key leaked into {path.name}"


# ------------------------------------------------------------------------------------- TLS


def test_tls_verification_is_on_by_default_and_the_opt_out_is_explicit() -> None:
    params = inspect.signature(AsyncFinalPOS).parameters
    assert params["insecure_skip_tls_verify"].default is False
    assert params["insecure_skip_tls_verify"].kind is inspect.Parameter.KEYWORD_ONLY
    assert not any("verify" in name and name != "insecure_skip_tls_verify" for name in params)
    assert aiohttp_transport(AsyncFinalPOS(SECRET)).verify_tls is True
    with pytest.raises(TypeError, match="insecure_skip_tls_verify"):
        AsyncFinalPOS(SECRET, insecure_skip_tls_verify="yes")  # type: ignore[arg-type]  # wrong on purpose


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    return self_signed_tls(tmp_path)[0]


@pytest.fixture
async def tls_server(self_signed: ssl.SSLContext) -> AsyncIterator[tuple[str, list[str]]]:
    keys: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        keys.append(request.headers.get("x-api-key", ""))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed)
    await site.start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}", keys
    finally:
        await runner.cleanup()


async def test_an_untrusted_certificate_is_refused_and_the_key_never_sent(
    tls_server: tuple[str, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    url, keys = tls_server
    async with AsyncFinalPOS(SECRET, base_url=url, backoff_base=0, backoff_cap=0) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.request("GET", "/v1/api/customers")
    assert "certificate" in str(info.value).lower()
    assert info.value.attempts == 1  # a TLS failure is not transient: never retried
    assert keys == []  # the handshake failed before any header left
    assert_no_secret("TLS error", render(info.value))

    caplog.set_level(logging.WARNING, logger="finalpos")
    async with AsyncFinalPOS(SECRET, base_url=url, insecure_skip_tls_verify=True) as client:
        assert await client.request("GET", "/v1/api/customers") == {"ok": True}
    assert keys == [SECRET]
    assert any("verification is OFF" in r.getMessage() for r in caplog.records)
    assert_no_secret("logs", "\n".join(r.getMessage() for r in caplog.records))


async def test_the_sandbox_log_and_answers_never_show_the_key(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    async with (
        Sandbox(api_key=SECRET, access_log=True) as sb,
        AsyncFinalPOS(SECRET + "_wrong", base_url=sb.url) as wrong,
        AsyncFinalPOS(SECRET, base_url=sb.url) as right,
    ):
        with pytest.raises(AuthenticationError) as info:
            await wrong.request("GET", "/v1/api/customers")
        assert_no_secret("401 from the sandbox", render(info.value))
        raw = await right.send("GET", "/v1/api/customers")
        assert_no_secret("sandbox raw response", render(raw) + raw.text)
    assert_no_secret("logs", "\n".join(r.getMessage() for r in debug_logs.records))
