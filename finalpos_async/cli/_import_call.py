"""`import_file`: `finalpos import` as a Python call, for task runners (Celery, Airflow, Dagster,
a plain process): the same checks, journal, failed-rows files and exit status as the command,
without the signal handlers a terminal needs (the runner keeps its own)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from rich.console import Console

from .._constants import BULK_CONCURRENCY, BULK_DRAIN_TIMEOUT, DEFAULT_LEASE, WORKER_CHUNKS
from .._middleware import Middleware
from .._redis_limit import DEFAULT_REDIS_KEY
from ._connect import Settings
from ._import import run_import
from ._input import InputError
from ._options import ImportOptions, journal_spec, worker_problem
from ._rows import sniff_format
from ._spec import MethodError, lookup

__all__ = ["import_file"]


def import_file(
    resource: str,
    file: str | os.PathLike[str],
    *,
    api_key: str,
    base_url: str | None = None,
    journal: str | os.PathLike[str] | None = None,
    worker: bool = False,
    key: str | None = None,
    chunks: int = WORKER_CHUNKS,
    lease: float = DEFAULT_LEASE,
    tenant: str = "",
    concurrency: int = BULK_CONCURRENCY,
    rate: float | None = None,
    burst: float | None = None,
    redis_url: str | None = None,
    redis_key: str = DEFAULT_REDIS_KEY,
    fmt: str = "auto",
    output: TextIO | None = None,
    middleware: Sequence[Middleware] = (),
) -> int:
    """Import `file` into `resource` as `finalpos import RESOURCE FILE` does; returns its exit
    status (0: every row is in the target). The arguments are the command's options
    (`worker=True` is `--worker`: this call is one more worker of the file's job, taking chunks
    by lease from the PostgreSQL `journal` until every chunk is done). What the command prints
    goes to `output` (default stderr); `middleware` runs around every HTTP attempt. Raises
    `ValueError` for options that do not go together, and the command's errors
    (`FinalPOSError`, `OSError`) as they are.
    """
    path = Path(file)
    spec = None if journal is None else os.fspath(journal)
    problem = worker_problem(worker, spec, None, False, set())
    if problem is not None:
        raise ValueError(
            problem.replace("--worker", "worker=True").replace("--journal", "journal=")
        )
    choice = lookup(resource)
    if choice is None:
        raise InputError(f"unknown resource {resource!r} (see `finalpos resources`)")
    try:
        op = choice.pick("create")
    except MethodError as exc:
        raise InputError(str(exc)) from None
    options = ImportOptions(
        resource=choice.resource,
        method=op.name,
        file=path,
        fmt=sniff_format(path) if fmt == "auto" else fmt,
        concurrency=concurrency,
        rate=rate,
        burst=burst,
        journal=journal_spec(spec),
        no_journal=False,
        key_field=key,
        failed_file=None,
        validate_only=False,
        drain_timeout=BULK_DRAIN_TIMEOUT,
        redis_url=redis_url,
        redis_key=redis_key,
        worker=worker,
        chunks=chunks,
        lease_seconds=lease,
        tenant=tenant,
        handle_signals=False,
    )
    settings = Settings(
        api_key=api_key,
        base_url=base_url,
        sandbox_db=None,
        max_retries=None,
        timeout=None,
        middleware=tuple(middleware),
    )
    console = Console(file=output, stderr=output is None, soft_wrap=True)
    return run_import(options, settings, console)
