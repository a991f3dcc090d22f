"""`journal_store`: which journal store a `journal=` value names (the one place that chooses)."""

from __future__ import annotations

import os

from ._journal import JournalStore
from ._postgres_journal import PostgresJournal
from ._postgres_text import is_postgres_url
from ._sqlite_journal import Journal

__all__ = ["journal_store"]


def journal_store(spec: str | os.PathLike[str]) -> JournalStore:
    """The store `spec` names, not yet opened: a `PostgresJournal` for a `postgresql://` or
    `postgres://` URL (psycopg, the `postgres` extra, is imported when it opens), else a SQLite
    `Journal` at that path."""
    if isinstance(spec, str) and is_postgres_url(spec):
        return PostgresJournal(spec)
    return Journal(spec)
