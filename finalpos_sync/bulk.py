"""Bulk operations from sync code: `FinalPOS().bulk.run(...)` returns a `SyncBulkJob`.

    with FinalPOS() as client:
        report = client.bulk.run(client.customers.create, rows, journal="import.journal").wait()

The engine is `finalpos_async.bulk`'s, run on the client's private loop; the result, report,
journal and limiter types are its own objects, re-exported here (see `SyncBulkRunner.run`).
"""

from finalpos_async._rate_limit import RateLimiter
from finalpos_async.bulk import (
    BulkReport,
    ItemResult,
    ItemStatus,
    Journal,
    JournalBinding,
    JournalDamagedError,
    JournalEntry,
    JournalError,
    JournalLockedError,
    JournalMismatchError,
    JournalWriteError,
    TargetChangedError,
    content_digest,
    idempotency_key_for,
)
from finalpos_sync._bulk import SyncBulkJob, SyncBulkRunner, SyncLister

__all__ = [
    "BulkReport",
    "ItemResult",
    "ItemStatus",
    "Journal",
    "JournalBinding",
    "JournalDamagedError",
    "JournalEntry",
    "JournalError",
    "JournalLockedError",
    "JournalMismatchError",
    "JournalWriteError",
    "RateLimiter",
    "SyncBulkJob",
    "SyncBulkRunner",
    "SyncLister",
    "TargetChangedError",
    "content_digest",
    "idempotency_key_for",
]
