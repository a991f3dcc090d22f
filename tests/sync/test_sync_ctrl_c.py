"""Ctrl-C during a sync call raises `KeyboardInterrupt` within 0.5 s, every time, and cancels the
call in flight (the server sees its connection closed).

One child process makes 50 calls, one after the other, on one `finalpos_sync.FinalPOS`, against
a server of its own on 127.0.0.1 that reads each request and never answers. Once a request has
arrived, the server's thread sends SIGINT, and the child times, on its own clock, how long the
`KeyboardInterrupt` takes to reach the calling thread. The signal goes three ways in turn, since
the interpreter runs the handler only in the main thread but the kernel hands a process-wide
SIGINT to any thread: `os.kill` of the process (from the server's thread, which Linux then
usually interrupts itself), `signal.pthread_kill` to the loop thread, and to the main thread.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest

RUNS = 50
BOUND = 0.5  # seconds from the signal to KeyboardInterrupt in the caller

_CHILD = textwrap.dedent(
    """
    import json, os, signal, socket, sys, threading, time
    import finalpos_sync
    from finalpos_async._constants import SYNC_LOOP_THREAD_NAME

    RUNS, DEADLINE = int(sys.argv[1]), 20.0
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(RUNS)
    server.settimeout(DEADLINE)
    main_ident = threading.get_ident()
    sent_at = {}  # run -> monotonic time the signal was sent
    closed = {}  # run -> whether the server saw the client close the connection
    seen = [threading.Event() for _ in range(RUNS)]  # set once closed[run] is known
    how = ("os.kill", "loop thread", "main thread")

    def loop_ident():
        return next(t.ident for t in threading.enumerate() if t.name == SYNC_LOOP_THREAD_NAME)

    def serve():
        for run in range(RUNS):
            conn, _ = server.accept()
            with conn:
                conn.settimeout(DEADLINE)
                conn.recv(65536)  # the request arrived: the call is in flight
                sent_at[run] = time.monotonic()
                way = how[run % 3]
                if way == "os.kill":
                    os.kill(os.getpid(), signal.SIGINT)
                elif way == "loop thread":
                    signal.pthread_kill(loop_ident(), signal.SIGINT)
                else:
                    signal.pthread_kill(main_ident, signal.SIGINT)
                try:
                    while conn.recv(65536):  # b"" once the client dropped the connection
                        pass
                    closed[run] = True
                except OSError:
                    closed[run] = False
                seen[run].set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    client = finalpos_sync.FinalPOS(
        api_key="sk_test", base_url=f"http://127.0.0.1:{port}", timeout=None, max_retries=0
    )
    latencies, outcomes = [], []
    for run in range(RUNS):
        try:
            client.customers.retrieve(f"c{run}")
            outcomes.append("returned")
        except KeyboardInterrupt:
            latencies.append(time.monotonic() - sent_at[run])
            outcomes.append("KeyboardInterrupt")
        except BaseException as exc:
            outcomes.append(repr(exc))
        seen[run].wait(DEADLINE)  # the server has seen this connection end (or given up)
    client.close()
    thread.join(DEADLINE)
    print(json.dumps({"latencies": latencies, "outcomes": outcomes,
                      "closed": [closed.get(run, False) for run in range(RUNS)]}))
    """
)


@pytest.mark.e2e
@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX signals")
def test_ctrl_c_interrupts_a_sync_call_within_half_a_second_50_times_in_a_row() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(RUNS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["outcomes"] == ["KeyboardInterrupt"] * RUNS
    latencies = outcome["latencies"]
    assert len(latencies) == RUNS
    slow = [(run, round(t, 3)) for run, t in enumerate(latencies) if t >= BOUND]
    assert not slow, f"KeyboardInterrupt took {BOUND} s or more: {slow}"
    # Each call was cancelled on the loop: the server saw its connection closed.
    assert outcome["closed"] == [True] * RUNS
