"""`finalpos import` jobs on Celery workers (the `celery` extra: `pip install 'finalpos[celery]'`).

    import finalpos_async.celery  # on the workers, and where jobs are enqueued: the task

    from finalpos_async.celery import enqueue_import
    enqueue_import("customers", "/shared/customers.csv", key="email", tenant="acme", tasks=8,
                   base_url="https://api.finalpos.com", rate=200)

Each task is one more worker of the file's job (`finalpos import ... --worker`): it takes the
job's chunks by lease from the PostgreSQL journal until every chunk is done, and any task of the
job takes over a chunk whose worker died once its lease runs out. So the job never waits for
Celery to redeliver a dead worker's task (with Redis as the broker that takes the visibility
timeout, an hour by default), and more tasks than workers is fine: a task that starts after the
job is done returns at once. Enqueuing again is always safe (the same job, the same keys).

What a task message carries is not secret: the job (resource, file, --key, chunks, lease,
rate, the API's base URL) and the tenant's name. Each worker gets the rest from its
environment: `FINALPOS_JOURNAL` (the journal's URL; its password in PGPASSWORD or ~/.pgpass),
`FINALPOS_REDIS_URL` (the shared rate cap: one bucket per API key), and the tenants' API keys,
`FINALPOS_API_KEY` for the tenant "" and `FINALPOS_API_KEY_ACME` for "acme" (or
`use_api_keys(function)`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from celery import Celery, shared_task
from celery.result import AsyncResult

from ._constants import API_KEY_ENV, DEFAULT_LEASE, REDIS_URL_ENV, WORKER_CHUNKS
from ._middleware import Middleware
from ._secret import redact_url
from .cli import import_file

__all__ = [
    "JOURNAL_ENV",
    "TASK_NAME",
    "api_key_for",
    "enqueue_import",
    "import_worker",
    "use_api_keys",
    "use_middleware",
]

TASK_NAME = "finalpos.import_worker"
JOURNAL_ENV = "FINALPOS_JOURNAL"
_JOB_FIELDS = (
    "resource",
    "file",
    "key",
    "base_url",
    "chunks",
    "lease",
    "rate",
    "burst",
    "concurrency",
    "tenant",
    "journal",
)
_lookup: Callable[[str], str] | None = None
_middleware: tuple[Middleware, ...] = ()


def use_api_keys(lookup: Callable[[str], str] | None) -> None:
    """Get each tenant's API key from `lookup(tenant)` (None: from the environment again)."""
    global _lookup
    _lookup = lookup


def use_middleware(middleware: Sequence[Middleware]) -> None:
    """Run `middleware` around every HTTP attempt of this worker's imports (metrics, a header
    per attempt; see `finalpos_async.Middleware`)."""
    global _middleware
    _middleware = tuple(middleware)


def api_key_for(tenant: str) -> str:
    """The API key of `tenant` on this worker: `use_api_keys`'s function, else the environment
    (`FINALPOS_API_KEY` for "", `FINALPOS_API_KEY_<TENANT>` otherwise, upper case, other
    characters than letters and digits as `_`)."""
    if _lookup is not None:
        return _lookup(tenant)
    name = API_KEY_ENV
    if tenant:
        name += "_" + re.sub(r"[^A-Z0-9]", "_", tenant.upper())
    key = os.environ.get(name)
    if not key:
        raise LookupError(
            f"no API key for tenant {tenant!r} on this worker: set {name} in its environment "
            "(or call finalpos_async.celery.use_api_keys)"
        )
    return key


@shared_task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)
def import_worker(job: dict[str, Any]) -> int:
    """Work on `job` (see `enqueue_import`) until every chunk is done; the exit status of
    `finalpos import --worker` (0: every row of the job is in the target)."""
    unknown = set(job) - set(_JOB_FIELDS)
    if unknown:
        raise ValueError(f"a finalpos import job has no field {sorted(unknown)[0]!r}")
    journal = job.get("journal") or os.environ.get(JOURNAL_ENV)
    if not journal:
        raise LookupError(f"no journal for the job: set {JOURNAL_ENV} on this worker")
    return import_file(
        job["resource"],
        job["file"],
        api_key=api_key_for(job.get("tenant") or ""),
        base_url=job.get("base_url"),
        journal=journal,
        worker=True,
        key=job.get("key"),
        chunks=job.get("chunks") or WORKER_CHUNKS,
        lease=job.get("lease") or DEFAULT_LEASE,
        tenant=job.get("tenant") or "",
        concurrency=job.get("concurrency") or 16,
        rate=job.get("rate"),
        burst=job.get("burst"),
        redis_url=os.environ.get(REDIS_URL_ENV),
        middleware=_middleware,
    )


def enqueue_import(
    resource: str,
    file: str | os.PathLike[str],
    *,
    tasks: int = 4,
    key: str | None = None,
    tenant: str = "",
    base_url: str | None = None,
    chunks: int = WORKER_CHUNKS,
    lease: float = DEFAULT_LEASE,
    rate: float | None = None,
    burst: float | None = None,
    concurrency: int | None = None,
    journal: str | None = None,
    app: Celery | None = None,
    queue: str | None = None,
) -> list[AsyncResult[Any]]:
    """Send `tasks` tasks that import `file` (a path every worker can read) into `resource`,
    together, as workers of one job; returns their results.

    The options are `finalpos import`'s. `journal` overrides the workers' `FINALPOS_JOURNAL`
    and must not hold a password (messages are not secret: the password goes in PGPASSWORD or
    ~/.pgpass on the workers). `app` sends through that Celery app (default: the current one),
    to `queue` if given.
    """
    if tasks < 1:
        raise ValueError(f"tasks must be at least 1, got {tasks!r}")
    if journal is not None and urlsplit(journal).password is not None:
        raise ValueError(
            f"journal {redact_url(journal)!r} holds a password, which a task message must not "
            "carry: put it in PGPASSWORD or ~/.pgpass on the workers and give the URL without it"
        )
    job: dict[str, Any] = {
        "resource": resource,
        "file": os.path.abspath(os.fspath(file)),
        "key": key,
        "base_url": base_url,
        "chunks": chunks,
        "lease": lease,
        "rate": rate,
        "burst": burst,
        "concurrency": concurrency,
        "tenant": tenant,
        "journal": journal,
    }
    job = {name: value for name, value in job.items() if value is not None}
    routing: dict[str, Any] = {} if queue is None else {"queue": queue}
    if app is not None:
        return [app.send_task(TASK_NAME, args=(job,), **routing) for _ in range(tasks)]
    return [import_worker.apply_async(args=(job,), **routing) for _ in range(tasks)]
