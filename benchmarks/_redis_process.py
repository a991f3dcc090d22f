"""A throwaway redis-server for the benchmarks: 127.0.0.1, a free port, a temp dir, no persistence.

`benchmarks/` is not a package: scripts import this as `_redis_process` (like `_sandbox_process`).
The start logic mirrors `tests/redis_server.py` (poll PING within a deadline).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Generator

from _sandbox_process import stop_process

START_DEADLINE = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Generator[str, None, None]:
    """Run a redis-server until the block exits (error and Ctrl-C included); yields its URL."""
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
        port = _free_port()
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", directory]
        args += ["--save", "", "--appendonly", "no"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + START_DEADLINE
            while not _answers(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}")
                time.sleep(0.01)  # polling, bounded by the deadline above
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop_process(proc)


def redis_info(url: str, section: str) -> dict[str, str]:
    """One `INFO <section>` of the server at `url` (redis://host:port/db), as field -> value."""
    host, port = url.removeprefix("redis://").split("/")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"INFO {section}\r\n".encode())
        reply = sock.recv(65536)
        header, _, body = reply.partition(b"\r\n")
        if not header.startswith(b"$"):
            raise RuntimeError(f"INFO {section} failed: {reply[:200]!r}")
        while len(body) < int(header[1:]) + 2:  # the bulk string and its closing CRLF
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"redis-server closed the connection during INFO {section}")
            body += chunk
    return dict(line.split(":", 1) for line in body.decode().splitlines() if ":" in line)


def redis_cpu_seconds(url: str) -> tuple[float, float]:
    """(used_cpu_sys + used_cpu_user, seconds spent inside EVAL/EVALSHA) since the start."""
    cpu = redis_info(url, "cpu")
    usec = 0
    for name, stats in redis_info(url, "commandstats").items():
        if name in ("cmdstat_eval", "cmdstat_evalsha"):
            fields = dict(item.split("=", 1) for item in stats.split(","))
            usec += int(fields["usec"])
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), usec / 1e6
