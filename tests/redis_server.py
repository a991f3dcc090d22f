"""A real `redis-server` for the shared-limiter tests: 127.0.0.1, a free port, a temp dir.

`RedisServer.start()` launches it (no persistence) and polls PING until it answers, within a
deadline; `stop()` terminates it and waits. `redis_available()` says whether the binary is
installed (the conftest fixture fails under `CI=true` when it is not, and skips otherwise).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisServer", "free_port", "redis_available"]

START_DEADLINE = 15.0


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    """PING answered (+PONG, or -NOAUTH when a password is set): the server is serving."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH"))


class RedisServer:
    """One redis-server process; `url` is ready to hand to `RedisRateLimiter`."""

    def __init__(self, directory: Path, *, password: str | None = None) -> None:
        self.directory = directory
        self.password = password
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        args += ["--dir", str(self.directory), "--save", "", "--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory
        )
        deadline = time.monotonic() + START_DEADLINE
        while not _answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)  # polling, bounded by the deadline above
        return self

    def command(self, *words: str) -> bytes:
        """Send one command (RESP inline) on a fresh connection; the first reply bytes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            if self.password:
                sock.sendall(f"AUTH {self.password}\r\n".encode())
                sock.recv(64)
            sock.sendall((" ".join(words) + "\r\n").encode())
            return sock.recv(4096)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
