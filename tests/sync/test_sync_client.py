"""`finalpos_sync.FinalPOS` against the sandbox: the async behaviours, minus `await`, everywhere."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import finalpos_async
import finalpos_sync
from finalpos_async.sandbox import Sandbox
from finalpos_sync import FinalPOS, Page, RawResponse, SyncPaginator
from finalpos_sync import _loop as loop_module
from finalpos_sync.types import Customer

DEADLINE = 60.0  # seconds any wait here may take before the test fails
FAST = {"backoff_base": 0.001, "backoff_cap": 0.002}  # retries without real waiting


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox().run_in_thread() as sb:
        yield sb


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[FinalPOS]:
    sandbox.reset()
    with FinalPOS(api_key=sandbox.api_key, base_url=sandbox.url, **FAST) as c:
        yield c


def _make_customers(client: FinalPOS, n: int) -> list[Customer]:
    return [
        client.customers.create(email=f"c{i}@example.com", first_name=f"F{i}", last_name="L")
        for i in range(n)
    ]


def test_create_retrieve_update_delete_customer(client: FinalPOS) -> None:
    created = client.customers.create(email="ada@example.com", first_name="Ada", last_name="L")
    assert isinstance(created, Customer)
    assert client.customers.retrieve(created.id).email == "ada@example.com"
    updated = client.customers.update(created.id, phone="+3312345")
    assert updated.phone == "+3312345"
    client.customers.delete(created.id)
    with pytest.raises(finalpos_sync.NotFoundError) as excinfo:
        client.customers.retrieve(created.id)
    assert excinfo.value.status_code == 404


def test_errors_and_models_are_the_async_packages_own_objects() -> None:
    assert finalpos_sync.NotFoundError is finalpos_async.NotFoundError
    assert finalpos_sync.RawResponse is finalpos_async.RawResponse
    assert finalpos_sync.types.Customer is finalpos_async.types.Customer


def test_iteration_pulls_every_record_one_page_at_a_time(client: FinalPOS) -> None:
    made = _make_customers(client, 7)
    paginator = client.customers.list(limit=3)
    assert isinstance(paginator, SyncPaginator)
    assert [c.id for c in paginator] == [c.id for c in made]
    pages = list(client.customers.list(limit=3).pages())
    assert [len(p) for p in pages] == [3, 3, 1]
    assert all(isinstance(p, Page) for p in pages)
    first = client.customers.list(limit=3).first_page()
    assert [c.id for c in first] == [c.id for c in made[:3]]
    assert len(list(client.customers.list(limit=3, max_items=4))) == 4


def test_abandoned_iteration_leaves_the_client_usable(client: FinalPOS) -> None:
    _make_customers(client, 5)
    for _ in client.customers.list(limit=2):
        break
    assert len(list(client.customers.list(limit=2))) == 5


def test_raw_response_gives_status_headers_attempts_and_parse(client: FinalPOS) -> None:
    created = _make_customers(client, 1)[0]
    raw = client.customers.with_raw_response.retrieve(created.id)
    assert isinstance(raw, RawResponse)
    assert raw.status_code == 200
    assert raw.parse().id == created.id
    page = client.customers.with_raw_response.list(limit=5).parse()
    assert [c.id for c in page] == [created.id]


def test_scripted_503s_are_retried_to_success(client: FinalPOS) -> None:
    created = _make_customers(client, 1)[0]
    raw = client.customers.with_raw_response.retrieve(
        created.id, extra_headers={"x-sandbox-fault": "503,503,ok"}
    )
    assert raw.status_code == 200
    assert raw.attempts == 3


def test_with_options_view_shares_the_loop_and_its_close_does_nothing(client: FinalPOS) -> None:
    created = _make_customers(client, 1)[0]
    view = client.with_options(max_retries=0)
    assert view.max_retries == 0
    assert client.max_retries != 0
    with pytest.raises(finalpos_sync.APIStatusError) as excinfo:
        view.customers.retrieve(created.id, extra_headers={"x-sandbox-fault": "503,ok"})
    assert excinfo.value.status_code == 503
    view.close()
    assert not client.is_closed
    assert client.customers.retrieve(created.id).id == created.id
    assert view._loop_thread is client._loop_thread


def test_request_escape_hatch_returns_parsed_json(client: FinalPOS) -> None:
    _make_customers(client, 2)
    body = client.request("GET", "/v1/api/customers", params={"limit": 10})
    assert isinstance(body, list)
    assert len(body) == 2


def test_wrong_api_key_raises_authentication_error(sandbox: Sandbox) -> None:
    with (
        FinalPOS(api_key="sk_wrong", base_url=sandbox.url, **FAST) as c,
        pytest.raises(finalpos_sync.AuthenticationError),
    ):
        c.customers.list().first_page()


def test_closed_client_refuses_calls_with_a_clear_error(sandbox: Sandbox) -> None:
    with FinalPOS(api_key=sandbox.api_key, base_url=sandbox.url) as c:
        c.customers.list().first_page()
    assert c.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        c.customers.list().first_page()


def test_session_is_not_a_parameter_of_the_sync_client() -> None:
    # An aiohttp session belongs to the loop it was made on; the sync client runs its own, so
    # it neither advertises nor accepts one.
    assert "session" not in inspect.signature(FinalPOS).parameters
    kwargs: dict[str, Any] = {"session": object()}
    with pytest.raises(TypeError, match="session"):
        FinalPOS(api_key="sk_x", base_url="http://127.0.0.1:9", **kwargs)


def test_bad_configuration_raises_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FINALPOS_API_KEY", raising=False)
    monkeypatch.delenv("FINALPOS_SANDBOX", raising=False)
    with pytest.raises(finalpos_sync.FinalPOSError, match="API key"):
        FinalPOS(base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="timeout"):
        FinalPOS(api_key="sk_x", base_url="http://127.0.0.1:9", timeout=-1)


def test_sixteen_threads_times_one_hundred_calls_on_one_client(client: FinalPOS) -> None:
    made = _make_customers(client, 16)
    errors: list[BaseException] = []
    seen: dict[int, list[str]] = {}

    def worker(n: int) -> None:
        try:
            seen[n] = [client.customers.retrieve(made[n].id).email for _ in range(100)]
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert not errors
    for n in range(16):
        assert seen[n] == [made[n].email] * 100


def test_call_from_inside_a_running_loop_works_and_warns_once(
    client: FinalPOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop_module, "_warned_running_loop", False)

    async def async_handler_calling_legacy_code() -> list[str]:
        made = _make_customers(client, 2)
        return [client.customers.retrieve(c.id).id for c in made]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = asyncio.run(async_handler_calling_legacy_code())
    assert len(ids) == 2
    running_loop_warnings = [w for w in caught if "AsyncFinalPOS" in str(w.message)]
    assert len(running_loop_warnings) == 1
    assert running_loop_warnings[0].filename == __file__  # points at the caller's line


def test_call_from_the_clients_own_loop_raises_naming_the_async_client(client: FinalPOS) -> None:
    async def event_hook() -> str:
        try:
            client.customers.list().first_page()
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    async def event_hook_done_right() -> Page[Customer]:
        return await client.async_client.customers.list()

    message = client._run(event_hook())
    assert "AsyncFinalPOS" in message
    assert "await" in message
    assert client._run(event_hook_done_right()) == []  # the async twin is the way in


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_cancels_the_request_in_flight() -> None:
    # A server that accepts, reads the request and never answers.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(DEADLINE)
    port = server.getsockname()[1]
    saw_close = threading.Event()

    def hold_then_interrupt() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(DEADLINE)
            conn.recv(65536)  # the request arrived: the call is in flight
            os.kill(os.getpid(), signal.SIGINT)
            while conn.recv(65536):  # b"" once the client dropped the connection
                pass
            saw_close.set()

    thread = threading.Thread(target=hold_then_interrupt)
    thread.start()
    client = FinalPOS(api_key="sk_test", base_url=f"http://127.0.0.1:{port}", timeout=None)
    try:
        with pytest.raises(KeyboardInterrupt):
            client.customers.retrieve("c1")
        assert saw_close.wait(DEADLINE)  # cancelled on the loop: the connection was released
    finally:
        client.close()
        thread.join(DEADLINE)
        server.close()


def _script(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_makes_a_call_and_exits_zero_within_deadline(
    client: FinalPOS, sandbox: Sandbox
) -> None:
    made = _make_customers(client, 1)[0]
    result = _script(
        """
        import os, sys, time, warnings
        from finalpos_sync import FinalPOS

        # Python 3.12+ warns about fork() with threads; that is the situation under test.
        warnings.simplefilter("ignore", DeprecationWarning)

        url, key, cid = sys.argv[1:4]
        client = FinalPOS(api_key=key, base_url=url)
        assert client.customers.retrieve(cid).id == cid  # loop thread and pool now exist
        pid = os.fork()
        if pid == 0:
            try:
                ok = client.customers.retrieve(cid).id == cid
                client.close()
            except BaseException as exc:
                print("child:", repr(exc), file=sys.stderr, flush=True)
                os._exit(2)
            os._exit(0 if ok else 3)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                sys.exit("child hung")
            time.sleep(0.01)  # polling a child process: there is nothing to wait on
        assert client.customers.retrieve(cid).id == cid  # the parent is unaffected
        client.close()
        sys.exit(os.waitstatus_to_exitcode(status))
        """,
        sandbox.url,
        sandbox.api_key,
        made.id,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_exit_without_close_leaves_stderr_empty(client: FinalPOS, sandbox: Sandbox) -> None:
    made = _make_customers(client, 1)[0]
    result = _script(
        """
        import sys
        from finalpos_sync import FinalPOS

        url, key, cid = sys.argv[1:4]
        client = FinalPOS(api_key=key, base_url=url)
        print(client.customers.retrieve(cid).id)
        # no close(): atexit must close the pool and stop the loop quietly
        """,
        sandbox.url,
        sandbox.api_key,
        made.id,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip() == made.id


def test_repr_names_the_sync_client_and_never_the_key(client: FinalPOS, sandbox: Sandbox) -> None:
    text = repr(client)
    assert text.startswith("<FinalPOS ")
    assert sandbox.api_key not in text


def test_wrong_calls_name_the_sync_method_and_raw_twins_say_what_they_do() -> None:
    with FinalPOS(api_key="sk_x", base_url="http://127.0.0.1:9") as client:
        kwargs: dict[str, Any] = {"email": "a@b.c"}
        with pytest.raises(TypeError, match=r"^Customers\.create\(\) missing"):
            client.customers.create(**kwargs)
        with pytest.raises(TypeError, match=r"^Customers\.create\(\) missing"):
            client.customers.with_raw_response.create(**kwargs)
        with pytest.raises(TypeError, match=r"^Customers\.list\(\) got an unexpected"):
            client.customers.with_raw_response.list(**{"bogus": 1})
        raw_list = client.customers.with_raw_response.list
        assert "No request is made" not in (raw_list.__doc__ or "")
        assert "fetches the first page now" in (raw_list.__doc__ or "")
        assert "No request is made" in (client.customers.list.__doc__ or "")
        assert str(inspect.signature(raw_list).return_annotation) == "RawResponse[Page[Customer]]"
