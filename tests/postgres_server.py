"""A private PostgreSQL cluster for the journal tests: the Debian package's initdb and pg_ctl, a
data directory in a fresh temp directory, 127.0.0.1 on a free port.

`PostgresServer.start()` runs initdb (scram passwords over TCP, the superuser `finalpos` with
the password `PASSWORD`) and pg_ctl start, waiting for the server to accept connections;
`stop()` runs `pg_ctl stop -m immediate` and removes the directory. initdb refuses to run as
root: then the directory is given to `nobody` and every PostgreSQL process runs as that user
(subprocess's `user=`). `postgres_bin()` finds the binaries (None when not installed).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import quote

from redis_server import free_port

__all__ = ["PASSWORD", "PostgresServer", "created_rows", "postgres_bin"]

PASSWORD = "s3cret-pg-pass"
USER = "finalpos"
START_DEADLINE = 60  # seconds; pg_ctl start -w polls the server until it answers
RUN_AS = "nobody"


def postgres_bin() -> Path | None:
    """The newest installed `/usr/lib/postgresql/*/bin` holding initdb and pg_ctl, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    for initdb in reversed(found):
        bin_dir = Path(initdb).parent
        if (bin_dir / "pg_ctl").exists():
            return bin_dir
    return None


class PostgresServer:
    """One private cluster; `url(schema)` is a URL whose tables live in their own schema."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        # Under /tmp itself, not pytest's tmp_path: that one is private to root (mode 0700), and
        # the server runs as another user when the tests run as root.
        self.directory = Path(tempfile.mkdtemp(prefix="finalpos-pg-"))
        self.data = self.directory / "data"
        self.user = RUN_AS if os.geteuid() == 0 else None
        self.started = False

    def url(self, schema: str | None = None, *, password: str | None = PASSWORD) -> str:
        """A URL for the database `postgres`; with `schema`, its search_path is that schema."""
        auth = USER if password is None else f"{USER}:{quote(password, safe='')}"
        query = f"?options=-csearch_path%3D{schema}" if schema else ""
        return f"postgresql://{auth}@127.0.0.1:{self.port}/postgres{query}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            user=self.user,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=START_DEADLINE,
            check=False,
        )

    def start(self) -> PostgresServer:
        if self.user is not None:
            shutil.chown(self.directory, self.user)
        pwfile = self.directory / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.user is not None:
            shutil.chown(pwfile, self.user)
        init = self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",  # a test cluster: nothing here needs to survive a power cut
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr or init.stdout}")
        # fsync off: the tests kill clients, never the server or the machine, and a commit that
        # waits for the disk would only slow a shared 2-core CI machine.
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.directory} -c fsync=off "
            "-c full_page_writes=off -c max_connections=50 -c shared_buffers=16MB"
        )
        start = self._run(
            str(self.bin_dir / "pg_ctl"),
            "start",
            "-D",
            str(self.data),
            "-w",
            "-t",
            str(START_DEADLINE),
            "-l",
            str(self.directory / "server.log"),
            "-o",
            options,
        )
        self.started = True  # pg_ctl may have started it even when it then reports a failure
        if start.returncode != 0:
            log = self.directory / "server.log"
            text = log.read_text(errors="replace") if log.exists() else ""
            self.stop()
            raise RuntimeError(f"pg_ctl start failed: {start.stderr}{text[-2000:]}")
        return self

    def schema(self) -> str:
        """A new empty schema (its name): one test's tables apart from every other test's."""
        import psycopg  # the `postgres` extra, installed with the test extra

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return name

    def stop(self) -> None:
        """Stop the server now (immediate: nothing in it needs to survive) and remove its files."""
        if self.started:
            self._run(str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate")
            self.started = False
        shutil.rmtree(self.directory, ignore_errors=True)


def created_rows(url: str) -> int:
    """Rows the journal at `url` has committed as created (0 before its tables exist)."""
    import psycopg  # the `postgres` extra: only the tests that start a cluster need it

    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('finalpos_journal_items')").fetchone() == (None,):
            return 0
        row = conn.execute(
            "SELECT COUNT(*) FROM finalpos_journal_items WHERE status = 'succeeded'"
        ).fetchone()
    return int(row[0]) if row else 0
