"""The journal's file on disk: made whole or not at all, and written by one process at a time."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from typing import IO

# No fcntl on Windows: two writers are not detected there (SQLite still keeps the file intact).
if sys.platform != "win32":
    import fcntl

__all__ = ["create_whole", "lock_writer"]


def create_whole(path: str, initialize: Callable[[sqlite3.Connection], None]) -> None:
    """Create the SQLite file `path` with `initialize` run in one transaction, atomically.

    It is built beside `path` and linked into place, so a kill while it is made never leaves an
    empty file there (an empty journal reads as a damaged one). A file made meanwhile by another
    process stands. Raises `OSError` or `sqlite3.Error`.
    """
    fd, building = tempfile.mkstemp(
        prefix=os.path.basename(path) + ".", suffix=".new", dir=os.path.dirname(path) or "."
    )
    os.close(fd)
    try:
        with contextlib.closing(sqlite3.connect(building, isolation_level=None)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")  # kept in the file's header
            conn.execute("BEGIN IMMEDIATE")
            initialize(conn)
            conn.execute("COMMIT")
        with contextlib.suppress(FileExistsError):
            os.link(building, path)
    finally:
        for leftover in (building, building + "-wal", building + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


def lock_writer(path: str) -> IO[bytes] | None:
    """Take the writer lock of the journal `path`: an open handle to keep (closing it releases
    the lock), or None where it cannot be had (Windows). Raises `BlockingIOError` when another
    process holds it, `OSError` when the file cannot be opened."""
    if sys.platform == "win32":  # pragma: no cover - no fcntl on Windows
        return None
    # flock on the database file itself: independent of SQLite's own (fcntl) locks on Linux and
    # macOS, and released by the kernel when the process dies, even on SIGKILL.
    handle = open(path, "ab")  # noqa: SIM115 - held open for the journal's lifetime
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        handle.close()
        raise
    return handle
