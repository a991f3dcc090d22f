"""Bulk operations: run one API operation over many inputs, bounded, streaming and resumable.

    async with AsyncFinalPOS() as client:
        report = await client.bulk.run(client.customers.create, rows, journal="import.journal")

See `BulkRunner.run` for the options, `BulkJob` for consuming results as they finish,
`Journal` (a SQLite file) or `PostgresJournal` (a PostgreSQL database, `journal="postgresql://..."`)
for resuming after a crash, `RateLimiter` for a shared requests-per-second cap, and
`ChunkBoard`/`keep_lease` for many workers sharing one job through a PostgreSQL journal.
"""

from ._items import ContentIdentities, Items, KeySpec, content_digest, idempotency_key_for
from ._job import BulkJob
from ._journal import (
    Intent,
    JournalBinding,
    JournalDamagedError,
    JournalEntry,
    JournalError,
    JournalLockedError,
    JournalMismatchError,
    JournalStore,
    JournalWriteError,
    job_id_for,
)
from ._lease_keeper import LeaseHolder, keep_lease
from ._leases import (
    ChunkBoard,
    ChunkStatus,
    Lease,
    LeaseLostError,
    Work,
    WorkStatus,
    chunk_of,
    worker_name,
)
from ._limiter import RateLimiter
from ._lookup import TargetChangedError
from ._postgres_journal import PostgresJournal
from ._results import BulkReport, ItemResult, ItemStatus
from ._runner import BulkOperation, BulkRunner
from ._runner import BulkOperation as Operation  # deprecated: the former name of BulkOperation
from ._sqlite_journal import Journal
from ._stores import journal_store
from ._target_copy import Lister, check_lookup

__all__ = [
    "BulkJob",
    "BulkOperation",
    "BulkReport",
    "BulkRunner",
    "ChunkBoard",
    "ChunkStatus",
    "ContentIdentities",
    "Intent",
    "ItemResult",
    "ItemStatus",
    "Items",
    "Journal",
    "JournalBinding",
    "JournalDamagedError",
    "JournalEntry",
    "JournalError",
    "JournalLockedError",
    "JournalMismatchError",
    "JournalStore",
    "JournalWriteError",
    "KeySpec",
    "Lease",
    "LeaseHolder",
    "LeaseLostError",
    "Lister",
    "Operation",
    "PostgresJournal",
    "RateLimiter",
    "TargetChangedError",
    "Work",
    "WorkStatus",
    "check_lookup",
    "chunk_of",
    "content_digest",
    "idempotency_key_for",
    "job_id_for",
    "journal_store",
    "keep_lease",
    "worker_name",
]
