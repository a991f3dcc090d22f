"""The sync facade's private loop thread: threads, running loops, re-entry, Ctrl-C, fork, exit."""

from __future__ import annotations

import asyncio
import builtins
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

from finalpos_sync import ClientClosedError, _loop
from finalpos_sync._loop import LoopThread

DEADLINE = 30.0  # seconds any wait in these tests may take before the test fails


async def _double(x: int) -> tuple[int, int]:
    return x * 2, threading.get_ident()


async def _boom() -> None:
    raise LookupError("from the coroutine")


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


def test_loop_starts_on_first_call_and_not_before(loop_thread: LoopThread) -> None:
    assert not loop_thread.started
    value, thread_id = loop_thread.run(_double(21))
    assert value == 42
    assert loop_thread.started
    assert thread_id != threading.get_ident()


def test_exception_from_coroutine_reaches_caller_unchanged(loop_thread: LoopThread) -> None:
    with pytest.raises(LookupError, match="from the coroutine"):
        loop_thread.run(_boom())
    assert loop_thread.run(_double(1))[0] == 2  # the loop survives the error


def test_sixteen_threads_share_one_loop_with_correct_results(loop_thread: LoopThread) -> None:
    results: dict[int, list[tuple[int, int]]] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            results[n] = [loop_thread.run(_double(n * 1000 + i)) for i in range(100)]
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert not errors
    assert sorted(results) == list(range(16))
    loop_threads = set()
    for n, pairs in results.items():
        assert [v for v, _ in pairs] == [(n * 1000 + i) * 2 for i in range(100)]
        loop_threads.update(tid for _, tid in pairs)
    assert len(loop_threads) == 1


def test_call_from_thread_running_a_loop_works_and_warns_once(
    loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_loop, "_warned_running_loop", False)

    async def handler() -> list[int]:
        # Legacy sync code called from an async handler: never "asyncio.run() cannot be called
        # from a running event loop".
        return [loop_thread.run(_double(i))[0] for i in range(3)]

    with pytest.warns(RuntimeWarning, match="AsyncFinalPOS") as record:
        assert asyncio.run(handler()) == [0, 2, 4]
    assert len(record) == 1


def test_no_running_loop_warning_under_ipython(
    loop_thread: LoopThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_loop, "_warned_running_loop", False)
    monkeypatch.setattr(builtins, "__IPYTHON__", True, raising=False)

    async def cell() -> int:
        return loop_thread.run(_double(5))[0]

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert asyncio.run(cell()) == 10


def test_call_from_the_loop_thread_raises_instead_of_deadlocking(loop_thread: LoopThread) -> None:
    async def event_hook() -> str:
        try:
            loop_thread.run(_double(1))
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    message = loop_thread.run(event_hook())
    assert "deadlock" in message
    assert "AsyncFinalPOS" in message
    assert loop_thread.run(_double(2))[0] == 4  # still usable afterwards


def test_close_from_the_loop_thread_raises(loop_thread: LoopThread) -> None:
    async def hook() -> str:
        try:
            loop_thread.close()
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert "AsyncFinalPOS" in loop_thread.run(hook())


def test_close_is_idempotent_runs_on_close_and_refuses_later_calls() -> None:
    closed_on: list[int] = []

    async def on_close() -> None:
        closed_on.append(threading.get_ident())

    lt = LoopThread(on_close=on_close)
    _, loop_tid = lt.run(_double(1))
    lt.close()
    lt.close()
    assert closed_on == [loop_tid]
    assert not lt.started
    coro = _double(1)
    with pytest.raises(RuntimeError, match="closed"):
        lt.run(coro)
    assert coro.cr_frame is None  # closed, so no "never awaited" warning


def test_close_without_start_starts_nothing() -> None:
    ran: list[bool] = []

    async def on_close() -> None:
        ran.append(True)

    lt = LoopThread(on_close=on_close)
    lt.close()
    assert ran == []
    assert not lt.started


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_cancels_the_in_flight_call_and_raises_keyboard_interrupt(
    loop_thread: LoopThread,
) -> None:
    started = threading.Event()
    unwound = threading.Event()

    async def slow_request() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)  # unwinding takes a loop turn, like releasing a response
            unwound.set()

    def press_ctrl_c() -> None:
        if started.wait(DEADLINE):
            os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=press_ctrl_c)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop_thread.run(slow_request())
    finally:
        timer.join(DEADLINE)
    # The task was cancelled and had unwound before KeyboardInterrupt reached us.
    assert unwound.is_set()
    assert loop_thread.run(_double(3))[0] == 6


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
def test_ctrl_c_handled_by_the_loop_thread_still_interrupts_the_waiting_caller(
    loop_thread: LoopThread,
) -> None:
    # The kernel hands a process's SIGINT to any thread; Python runs the handler in the main
    # thread. Here it always lands on the loop thread, which once left the caller blocked until
    # the call ended (an hour here: the test would run into pytest's timeout instead).
    _, loop_ident = loop_thread.run(_double(0))
    started = threading.Event()
    unwound = threading.Event()

    async def slow_request() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            unwound.set()

    def press_ctrl_c_on_the_loop_thread() -> None:
        if started.wait(DEADLINE):
            signal.pthread_kill(loop_ident, signal.SIGINT)

    timer = threading.Thread(target=press_ctrl_c_on_the_loop_thread)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop_thread.run(slow_request())
    finally:
        timer.join(DEADLINE)
    assert unwound.is_set()
    assert loop_thread.run(_double(3))[0] == 6


def _run_script(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_a_fresh_loop_and_exits_within_deadline() -> None:
    result = _run_script(
        """
        import asyncio, os, sys, threading, time, warnings
        from finalpos_sync._loop import LoopThread

        # Python 3.12+ warns about fork() with threads; that is the situation under test.
        warnings.simplefilter("ignore", DeprecationWarning)

        forks = []
        lt = LoopThread(on_fork=lambda: forks.append(os.getpid()))

        async def where():
            return os.getpid(), threading.get_ident()

        parent_pid, parent_loop_tid = lt.run(where())
        pid = os.fork()
        if pid == 0:
            try:
                child_pid, child_loop_tid = lt.run(where())
                ok = child_pid == os.getpid() and forks == [os.getpid()]
                lt.close()
            except BaseException as exc:
                print("child failed:", repr(exc), file=sys.stderr, flush=True)
                os._exit(2)
            os._exit(0 if ok else 3)
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                print("child hung", file=sys.stderr)
                sys.exit(4)
            time.sleep(0.01)  # polling a child process; there is no event to wait on
        assert lt.run(where())[1] == parent_loop_tid  # the parent's loop is untouched
        lt.close()
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_exit_without_close_runs_on_close_and_leaves_stderr_empty() -> None:
    result = _run_script(
        """
        import asyncio
        from finalpos_sync._loop import LoopThread

        async def on_close():
            await asyncio.sleep(0)
            print("on_close ran", flush=True)

        lt = LoopThread(on_close=on_close)

        async def pending_forever():
            await asyncio.sleep(3600)

        async def start_background():
            # a task still pending at exit must not print "Task was destroyed but it is pending"
            asyncio.get_running_loop().create_task(pending_forever())
            return 1

        assert lt.run(start_background()) == 1
        print("exiting", flush=True)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == ["exiting", "on_close ran"]


def test_close_from_another_thread_fails_the_call_in_flight_with_a_clear_error() -> None:
    lt = LoopThread()
    started = threading.Event()
    outcome: list[BaseException] = []

    async def slow() -> None:
        started.set()
        await asyncio.sleep(3600)

    def caller() -> None:
        try:
            lt.run(slow())
        except BaseException as exc:  # asserted below
            outcome.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    assert started.wait(DEADLINE)
    lt.close()
    thread.join(DEADLINE)
    assert len(outcome) == 1
    # A bare coroutine (not a call of the async client): the loop's stop cancelled it, and the
    # caller gets the typed error all the same, with its outcome unknown.
    assert isinstance(outcome[0], ClientClosedError)
    assert "closed while this call was in flight" in str(outcome[0])
    assert outcome[0].maybe_processed
