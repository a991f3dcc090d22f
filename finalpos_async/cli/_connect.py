"""Where the CLI's requests go: the real API when a key is given, else an embedded sandbox."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import attrs
import click

from .._client import AsyncFinalPOS
from .._constants import API_KEY_ENV, BASE_URL_ENV, READ_TIMEOUT

__all__ = ["Connection", "Settings", "connect"]


@attrs.frozen(kw_only=True)
class Settings:
    """The global options of the `finalpos` command."""

    api_key: str | None
    base_url: str | None
    sandbox_db: Path | None
    max_retries: int | None
    timeout: float | None
    # Requests per second over every HTTP attempt, retries included (the import's --rate).
    rate_limit: float | None = None


@attrs.frozen(kw_only=True)
class Connection:
    """An open client and what the user should know about where it points."""

    client: AsyncFinalPOS
    embedded: bool
    persistent: bool  # data outlives this command (real API or --sandbox-db)
    target: str  # where requests go, for people
    # What a journal is bound to: the base URL, or the sandbox's database file (its URL changes
    # with the port at every start; its file does not).
    target_id: str


@contextlib.asynccontextmanager
async def connect(
    settings: Settings, say: Callable[[str], None], *, reads: bool = False
) -> AsyncGenerator[Connection, None]:
    """Open the client (starting an embedded sandbox when there is no key), close it after.

    `reads`: the command reads existing data (export, get, delete), which a new in-memory
    sandbox cannot have: the notice says how to keep data between commands.
    """
    timeout = settings.timeout if settings.timeout is not None else READ_TIMEOUT
    if settings.api_key:
        if settings.sandbox_db is not None:
            say("note: --sandbox-db is ignored: an API key was given, so no sandbox is started.")
        client = AsyncFinalPOS(
            settings.api_key,
            base_url=settings.base_url,
            max_retries=settings.max_retries,
            timeout=timeout,
            rate_limit=settings.rate_limit,
        )
        async with client:
            url = client.base_url or ""
            yield Connection(
                client=client, embedded=False, persistent=True, target=url, target_id=url
            )
        return

    if settings.base_url is not None and settings.sandbox_db is None:
        # The user plainly meant a real target: importing into a throw-away sandbox instead
        # would report success for data that went nowhere.
        raise click.UsageError(
            f"a base URL was given ({settings.base_url}, from --base-url or {BASE_URL_ENV}) but "
            f"no API key: pass --api-key or set {API_KEY_ENV}. Without either, commands run "
            "against an embedded sandbox"
        )
    if settings.base_url is not None:
        say(f"note: {BASE_URL_ENV}/--base-url is ignored: --sandbox-db asks for the sandbox.")

    # Imported here: the sandbox (and its spec tables) is only needed without a key.
    from ..sandbox import Sandbox

    db = os.fspath(settings.sandbox_db) if settings.sandbox_db is not None else None
    db_id = f"sandbox:{settings.sandbox_db.absolute()}" if settings.sandbox_db is not None else ""
    sandbox = Sandbox(db=db)
    try:
        await sandbox.start()
    except sqlite3.DatabaseError as exc:
        raise click.UsageError(
            f"--sandbox-db {db}: {exc}: it is not a sandbox database. Give the file an earlier "
            "--sandbox-db made, or a new file name (it is created)"
        ) from None
    try:
        if db:
            where = f"data kept in {db}"
        elif reads:
            where = (
                "new and empty: data is kept between commands only with --sandbox-db FILE, "
                "given to each of them"
            )
        else:
            where = "data discarded on exit; --sandbox-db FILE keeps it"
        say(f"No API key given: using an embedded sandbox at {sandbox.url} ({where}).")
        async with AsyncFinalPOS(
            sandbox.api_key,
            base_url=sandbox.url,
            max_retries=settings.max_retries,
            timeout=timeout,
            rate_limit=settings.rate_limit,
        ) as client:
            yield Connection(
                client=client,
                embedded=True,
                persistent=db is not None,
                target=sandbox.url,
                target_id=db_id or sandbox.url,
            )
    finally:
        await sandbox.close()
