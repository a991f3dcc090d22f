"""What `finalpos import` was asked to do, and its exit statuses."""

from __future__ import annotations

import shlex
from pathlib import Path

import attrs

from .._constants import DEFAULT_LEASE, IMPORT_MAX_FIELD_BYTES, WORKER_CHUNKS
from .._method_info import MethodInfo
from .._redis_limit import DEFAULT_REDIS_KEY
from ._shard import Shard
from ._spec import Resource

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "ImportOptions",
    "journal_spec",
    "shown",
    "worker_problem",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def journal_spec(text: str | None) -> Path | str | None:
    """--journal as given: a PostgreSQL URL stays a `str` (a `Path` would fold its `//`), any
    other value is the path of a SQLite file."""
    from ..bulk import PostgresJournal, journal_store  # the bulk engine: not loaded for export

    if text is None or isinstance(journal_store(text), PostgresJournal):
        return text
    return Path(text)


def worker_problem(
    worker: bool, journal: str | None, shard: Shard | None, validate_only: bool, given: set[str]
) -> str | None:
    """What is wrong with --worker and its options as given (`given`: the options named on the
    command line among `chunks`, `lease_seconds`), or None."""
    if not worker:
        for name, flag in (("chunks", "--chunks"), ("lease_seconds", "--lease")):
            if name in given:
                return f"{flag} is for --worker: add --worker, or drop {flag}"
        if shard is not None and isinstance(journal_spec(journal), str):
            return (
                "--shard splits an import over journals of their own; with a shared PostgreSQL "
                "--journal, run each process with --worker instead of --shard"
            )
        return None
    if not isinstance(journal_spec(journal), str):
        return (
            "--worker shares the job through a PostgreSQL journal: give --journal "
            "postgresql://user@host/db (the same for every worker)"
        )
    if shard is not None:
        return "--worker and --shard exclude each other: drop --shard"
    if validate_only:
        return "--worker and --validate-only exclude each other: drop --worker"
    return None


def shown(journal: Path | str) -> str:
    """A journal as printed and recorded: a URL without its password (libpq reads it from
    PGPASSWORD or ~/.pgpass), a path as it is."""
    from ..bulk import journal_store

    return journal_store(journal).path  # not opened: only named


@attrs.frozen(kw_only=True)
class ImportOptions:
    """What the `import` command was asked to do."""

    resource: Resource
    file: Path
    fmt: str
    concurrency: int
    rate: float | None
    burst: float | None = None  # of --rate (default: a tenth of a second's worth, at least 1)
    # A SQLite file, or a PostgreSQL URL (a `str`: see `journal_spec`); repr: no password.
    journal: Path | str | None = attrs.field(repr=False)
    no_journal: bool
    # --rotated-key: the journal was written with another API key of the same account.
    rotated_key: bool = False
    key_field: str | None
    failed_file: Path | None
    validate_only: bool
    drain_timeout: float
    # The create method (`create_row`); None: the resource's only (or `create`) one.
    method: str | None = None
    encoding: str = "utf-8-sig"
    # --max-field-bytes: the largest CSV cell or JSON Lines line read (a larger one: invalid).
    max_field_bytes: int = IMPORT_MAX_FIELD_BYTES
    # --keep-whitespace: CSV cells as given (by default they are trimmed, see `_rows`).
    keep_whitespace: bool = False
    resend_unknown: bool = False
    # How the user ran the command, up to `import` (API key masked): for the printed instruction.
    command_prefix: str = "finalpos"
    # The import options a follow-up run should repeat (--rate, --concurrency, ...).
    rerun_flags: str = ""
    # --shard K/N: import only the rows that hash to shard K (a failed-rows file carries it).
    shard: Shard | None = None
    # --redis-url/--redis-key: share --rate with every process naming them (repr: no password).
    redis_url: str | None = attrs.field(default=None, repr=False)
    redis_key: str = DEFAULT_REDIS_KEY
    # --worker: this process is one more worker of the job, taking its chunks by lease from the
    # PostgreSQL journal (`_worker`); --chunks splits a new job, --lease is each lease's length.
    worker: bool = False
    chunks: int = WORKER_CHUNKS
    lease_seconds: float = DEFAULT_LEASE
    tenant: str = ""  # whose job it is, as `finalpos jobs` shows it (a name, never a key)
    # Ctrl-C and SIGTERM stop the run gracefully: a terminal's; a task runner keeps its own.
    handle_signals: bool = True

    def same_command(self, *extra: str) -> str:
        """This import as a command to run again (the API key masked), plus `extra` words."""
        words = [self.command_prefix, "import", self.name, shlex.quote(str(self.file))]
        if self.key_field is not None:
            words += ["--key", shlex.quote(self.key_field)]
        if self.worker:
            words.append("--worker")
        elif self.shard is not None:
            words += ["--shard", self.shard.label]
        if self.failed_file is not None:
            words += ["--failed-file", shlex.quote(str(self.failed_file))]
        if self.journal is not None and "--journal" not in extra:
            words += ["--journal", shlex.quote(shown(self.journal))]
        if self.no_journal:
            words.append("--no-journal")
        if self.rotated_key and "--rotated-key" not in extra:
            words.append("--rotated-key")
        if self.encoding != "utf-8-sig":
            words += ["--encoding", shlex.quote(self.encoding)]
        words += [self.rerun_flags, *extra]
        return " ".join(word for word in words if word)

    @property
    def operation(self) -> MethodInfo:
        """The typed create method the rows go to."""
        return self.resource.pick("create", self.method)

    @property
    def name(self) -> str:
        """The resource as the command names it: `customers`, `custom_tables.create_row`."""
        op = self.operation
        if self.resource.default("create") is op and op.name == "create":
            return self.resource.name
        return f"{self.resource.name}.{op.name}"
