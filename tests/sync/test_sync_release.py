"""A `finalpos_sync.FinalPOS` dropped without `close()` is released: its loop thread stops and
its connections close once it is garbage collected, so a client per request leaks nothing.

Each client makes one call to a server on 127.0.0.1 (in a thread of its own), so each had a
running loop thread and an open connection when it was dropped.
"""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import open_fds
from held_server import held_server

import finalpos_sync
from finalpos_async._constants import SYNC_LOOP_THREAD_NAME

CLIENTS = 200
DEADLINE = 30.0
README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="counts file descriptors through /proc"
)


def _loop_threads() -> int:
    return sum(t.name == SYNC_LOOP_THREAD_NAME for t in threading.enumerate())


def _settle(done: Callable[[], bool]) -> bool:
    """Collect garbage and poll (never a fixed sleep) until `done()`, for DEADLINE seconds."""
    until = time.monotonic() + DEADLINE
    pause = threading.Event()
    while True:
        gc.collect()
        if done():
            return True
        if time.monotonic() > until:
            return False
        pause.wait(0.02)


def test_200_dropped_sync_clients_give_back_their_threads_and_fds() -> None:
    with held_server(hold=0.0) as server:
        url = server.url
        gc.collect()
        threads, fds = threading.active_count(), open_fds()
        refs: list[weakref.ref[finalpos_sync.FinalPOS]] = []
        for n in range(CLIENTS):
            client = finalpos_sync.FinalPOS(api_key="sk_test", base_url=url)
            assert client.request("GET", "/v1/api/customers", params={"n": n}) == []
            refs.append(weakref.ref(client))
            del client  # dropped without close()
        assert server.hits == CLIENTS

        def released() -> bool:
            return (
                threading.active_count() <= threads + 2
                and open_fds() <= fds + 2
                and _loop_threads() == 0
            )

        assert _settle(released), (
            f"threads {threads} -> {threading.active_count()} ({_loop_threads()} loop threads), "
            f"fds {fds} -> {open_fds()}"
        )
        # Nothing kept a client alive: the loop thread holds no reference to its owner.
        assert all(ref() is None for ref in refs)
        assert abs(threading.active_count() - threads) <= 2
        assert abs(open_fds() - fds) <= 2


def test_a_view_keeps_its_dropped_parent_open_until_the_view_goes_too() -> None:
    with held_server(hold=0.0) as server:
        client = finalpos_sync.FinalPOS(api_key="sk_test", base_url=server.url)
        view = client.with_options(max_retries=0)
        del client
        gc.collect()
        assert view.request("GET", "/v1/api/customers", params={"n": 1}) == []
        assert not view.is_closed
        assert _loop_threads() >= 1
        del view
        assert _settle(lambda: _loop_threads() == 0)


@pytest.mark.e2e
def test_dropped_clients_never_run_out_of_fds_under_a_256_fd_limit() -> None:
    # Before: every dropped client kept 5 to 8 fds, and the 50th or so hit "Too many open
    # files". The child runs 300 clients one after the other under RLIMIT_NOFILE = 256.
    code = textwrap.dedent(
        """
        import gc, json, os, resource, sys, threading
        sys.path.insert(0, sys.argv[1])
        from held_server import held_server
        import finalpos_sync

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        peak = 0
        with held_server(hold=0.0) as server:
            for n in range(300):
                client = finalpos_sync.FinalPOS(api_key="sk_test", base_url=server.url)
                client.request("GET", "/v1/api/customers", params={"n": n})
                del client
                peak = max(peak, len(os.listdir("/proc/self/fd")))
            hits = server.hits
        print(json.dumps({"peak_fds": peak, "hits": hits}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parents[1])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["hits"] == 300
    assert outcome["peak_fds"] < 128  # far below the limit: released as they go


@pytest.mark.e2e
def test_a_client_dropped_just_before_exit_is_closed_quietly() -> None:
    # Its finalizer has only asked the loop to stop; the exit hook waits for it to finish, so
    # nothing prints "Event loop is closed", "Unclosed client session" or a thread traceback.
    code = textwrap.dedent(
        """
        import gc, sys, warnings
        sys.path.insert(0, sys.argv[1])
        warnings.simplefilter("always", ResourceWarning)
        from held_server import held_server
        import finalpos_sync

        with held_server(hold=0.0) as server:
            clients = [finalpos_sync.FinalPOS(api_key="sk_test", base_url=server.url)
                       for _ in range(20)]
            for n, client in enumerate(clients):
                client.request("GET", "/v1/api/customers", params={"n": n})
            del client, clients
            gc.collect()
        print("exiting", flush=True)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parents[1])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "exiting\n"
    assert result.stderr == ""


def test_readme_says_a_dropped_sync_client_is_released() -> None:
    text = re.sub(r"\s+", " ", README.read_text())
    for words in (
        "A dropped sync client is released.",
        "is released once it is garbage collected: its loop thread stops and its connections close",
        "leaks no thread and no file descriptor",
    ):
        assert words in text, words
