"""A throwaway PostgreSQL cluster for the benchmarks (`postgres_cluster`), and a fresh schema in it
(`fresh_schema`): the Debian package's initdb and pg_ctl (`/usr/lib/postgresql/*/bin`; as
`nobody` when run as root) in a temporary directory on a free port of 127.0.0.1, with the
server's default durability (fsync on, synchronous_commit on), stopped at the end.

`benchmarks/` is not a package: scripts import this as `_postgres_process`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Generator
from pathlib import Path

__all__ = ["fresh_schema", "postgres_cluster"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def postgres_cluster() -> Generator[str, None, None]:
    """A throwaway cluster with default durability until the block exits; yields a URL."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql), or give --url")
    bin_dir = Path(found[-1]).parent
    user = "nobody" if os.geteuid() == 0 else None
    directory = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    data = directory / "data"
    port = _free_port()

    def run(*args: str) -> None:
        subprocess.run(args, user=user, cwd=directory, check=True, capture_output=True)

    try:
        if user is not None:
            shutil.chown(directory, user)
        run(str(bin_dir / "initdb"), "-D", str(data), "-U", "bench", "--auth=trust", "--no-sync")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={directory}"
        )
        run(str(bin_dir / "pg_ctl"), "start", "-D", str(data), "-w", "-o", options, "-l",
            str(directory / "log"))  # fmt: skip
        yield f"postgresql://bench@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            run(str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast")
        shutil.rmtree(directory, ignore_errors=True)


def fresh_schema(url: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")  # pyright: ignore[reportArgumentType]  # a generated name
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{name}"
