"""The bulk journal's contract: what a run records about its items, and the values it uses.

A journal records each item of a job by its identity (its key): the *intent* to send it (status
`sending`, with the digest of what goes out and its idempotency key), made durable before its
request leaves (`record_intents`, one commit for a window of items: group commit), then its
*outcome* (`succeeded`, `failed`, `unknown`), buffered and committed in batches. After any
crash an item still `sending` may or may not have been created: the bulk engine treats it as
unknown and resolves it (a lookup in the target) before it could send anything again. Nothing
that may have been sent is ever taken for new.

A journal belongs to one target and one operation (`JournalBinding`): opening it for anything
else raises `JournalMismatchError` before a request is made. Its job id, part of every
idempotency key, is derived from what the job is (`job_id_for`), not from the file, so a new or
lost journal still sends the same keys.

`JournalStore` is the interface the engine uses; `Journal` (`_sqlite_journal`) keeps it in a
SQLite file, `PostgresJournal` (`_postgres_journal`) in a PostgreSQL database, many jobs side by
side; `journal_store` (`_stores`) picks one from a `journal=` value. Every storage failure is a
`JournalError` naming the file (or the URL, without its password) and the fix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Protocol

import attrs

from .._exceptions import FinalPOSError

__all__ = [
    "BINDING_FIELDS",
    "SENDING",
    "Intent",
    "JournalBinding",
    "JournalDamagedError",
    "JournalEntry",
    "JournalError",
    "JournalLockedError",
    "JournalMismatchError",
    "JournalStore",
    "JournalWriteError",
    "job_id_for",
]

BINDING_FIELDS = ("target", "credentials", "operation", "identity")

SENDING = "sending"
"""The status of an item whose request may be on its way: its intent, and no outcome yet."""


class JournalError(FinalPOSError):
    """A journal cannot be used as asked (see the subclasses); `path` names the file (or the
    database URL, without its password)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class JournalLockedError(JournalError):
    """Another process is writing this journal right now; nothing was sent."""


class JournalWriteError(JournalError):
    """The journal cannot be written: the disk is full, the location is read-only, an I/O error.

    Raised before a run starts (nothing was sent), or during one: the run then stops starting
    items, and those whose outcome could not be written stay `sending` in the file, so the next
    run resolves them (looks them up) instead of sending them as new.
    """

    @classmethod
    def naming(
        cls, path: str, doing: str, cause: str, *, full: bool, readonly: bool
    ) -> JournalWriteError:
        """The error for failing to `doing` (open, write, ...) the journal at `path`."""
        if full:
            fix = (
                "the disk is full. Free some space there (or give --journal a path on another "
                "disk), then run the same command again: rows whose outcome could not be written "
                "are looked up first"
            )
        elif readonly:
            fix = (
                "the location is not writable. Give --journal (journal=) a path in a writable "
                "directory"
            )
        else:
            fix = "check the disk, then run the same command again"
        return cls(f"cannot {doing} journal {path!r} ({cause}): {fix}", path=path)


class JournalDamagedError(JournalError):
    """The file is empty, cut short or not a journal at all: its records cannot be trusted."""

    @classmethod
    def naming(cls, path: str, why: str) -> JournalDamagedError:
        """The error for the journal at `path`, damaged as `why` says, with the way on."""
        return cls(
            f"journal {path!r} is damaged: {why}. Its records cannot be trusted, so nothing "
            "was sent. Keep it for the record and give this run a new journal file: the new "
            "journal continues the same job (same idempotency keys) and looks rows up in the "
            "target before sending them",
            path=path,
        )


class JournalMismatchError(JournalError):
    """The journal was written for another target, credentials, operation or identity rule.

    `recorded` is what the file says, `requested` what this run is; `differs` names the fields
    that differ (`"target"`, `"credentials"`, `"operation"`, `"identity"`, `"job_id"`).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        recorded: JournalBinding,
        requested: JournalBinding,
        differs: tuple[str, ...],
    ) -> None:
        super().__init__(message, path=path)
        self.recorded = recorded
        self.requested = requested
        self.differs = differs


@attrs.frozen(kw_only=True)
class JournalBinding:
    """What a journal belongs to; two runs may share a journal only if every field is equal.

    - `target`: where the records go: the API base URL, or `sandbox:/abs/path.db` for a sandbox
      database (the URL of a local sandbox changes with its port; its file does not).
    - `credentials`: a one-way fingerprint of the API key (never the key).
    - `operation`: e.g. `customers.create`.
    - `identity`: the rule that names a row across runs, e.g. `key=email` or `content`.
    """

    target: str
    credentials: str
    operation: str
    identity: str

    def describe(self) -> str:
        """For messages: `customers.create into URL (API key 3fa2c1d0…)`."""
        return f"{self.operation} into {self.target} (API key {self.credentials[:8]}…)"

    def differences(
        self, other: JournalBinding, *, rotated_credentials: bool = False
    ) -> tuple[str, ...]:
        """The fields in which `other` differs from this binding, in `BINDING_FIELDS` order;
        `rotated_credentials` lets other credentials pass (the API key was rotated)."""
        return tuple(
            name
            for name in BINDING_FIELDS
            if getattr(self, name) != getattr(other, name)
            and not (name == "credentials" and rotated_credentials)
        )


def job_id_for(binding: JournalBinding) -> str:
    """The job id of a run that names none: what the job is (target, operation, identity rule).

    Not the credentials, nor the journal file: a run after a key rotation, or with a new or
    lost journal, is the same job and sends the same idempotency keys.
    """
    text = "\0".join(("finalpos bulk job", binding.target, binding.operation, binding.identity))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@attrs.frozen(kw_only=True)
class JournalEntry:
    """What the journal knows about one item key.

    `status` is `succeeded`, `failed` (certainly not created: the API refused it, or it was
    never sent), `unknown` (it may have been created: its answer was lost) or `sending` (its
    request was on its way when the run ended: unknown too).
    """

    key: str
    status: str
    digest: str
    source_digest: str | None
    created_id: str | None
    idempotency_key: str
    attempts: int
    error: str | None

    def matches(self, digest: str) -> bool:
        """True when `digest` is the content recorded for this key (sent, or its source)."""
        return digest in (self.digest, self.source_digest)

    @property
    def unresolved(self) -> bool:
        """It may or may not be in the target (`unknown`, or `sending` when a run ended)."""
        return self.status in ("unknown", SENDING)


@attrs.frozen
class Intent:
    """An item about to be sent: its key, the digest of what is sent, its idempotency key."""

    key: str
    digest: str
    idempotency_key: str


class JournalStore(Protocol):
    """What the bulk engine needs of a journal (`Journal` keeps one in a SQLite file,
    `PostgresJournal` in a PostgreSQL database).

    Not thread-safe: one event loop uses it. Every method may raise `JournalError`.
    """

    @property
    def path(self) -> str:
        """Where it is kept, for messages (a file path, a URL without its password)."""
        ...

    @property
    def job_id(self) -> str | None:
        """The job's identity (None until the first `bind`)."""
        ...

    @property
    def binding(self) -> JournalBinding | None:
        """What the journal belongs to (None until the first `bind`)."""
        ...

    def open(self) -> JournalStore:
        """Open it (idempotent); returns itself."""
        ...

    def close(self) -> None:
        """Commit what is buffered and release it (idempotent)."""
        ...

    def bind(
        self,
        binding: JournalBinding,
        *,
        job_id: str | None = None,
        rotated_credentials: bool = False,
    ) -> str:
        """Tie it to `binding` or check that it is; returns the job id."""
        ...

    def has_items(self) -> bool:
        """True when any item has been recorded."""
        ...

    def lookup(self, key: str) -> JournalEntry | None:
        """What is recorded for `key`, or None."""
        ...

    def created_ids(self, limit: int) -> list[str]:
        """Up to `limit` ids of records it says were created, the most recent first."""
        ...

    def created_with_content(self, digest: str) -> int:
        """How many items named by their content `digest` were created."""
        ...

    def count_seen(self, name: str) -> int:
        """How often this run named an item `name` before (0 the first time), counted in the
        store so that memory does not grow with the input; `bind` starts a new count."""
        ...

    def record_intents(self, intents: Iterable[Intent]) -> None:
        """Durably record that these items are about to be sent (one commit)."""
        ...

    def record(
        self,
        key: str,
        status: str,
        *,
        digest: str,
        idempotency_key: str,
        created_id: str | None = None,
        attempts: int = 0,
        error: str | None = None,
    ) -> None:
        """Buffer one item's outcome."""
        ...

    def withdraw(self, key: str) -> None:
        """Forget the intent of an item that was not sent after all (buffered)."""
        ...

    def flush(self) -> None:
        """Commit the buffered outcomes now."""
        ...

    def counts(self) -> dict[str, int]:
        """How many keys it holds per status."""
        ...
