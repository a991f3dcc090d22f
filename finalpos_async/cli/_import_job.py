"""The bulk job of `finalpos import`: each row through the typed create method's raw twin, with
what the engine needs to resolve a lost answer (a lister of the target, by --key or content)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

from .._method_info import MethodInfo
from .._model import Model
from .._resource import raw_twin
from ..bulk import BulkJob, JournalStore, Lister
from ._connect import Connection
from ._input import Row
from ._options import ImportOptions
from ._plan import key_of, make_parser
from ._rows import RowParser
from ._spec import body_arguments

__all__ = ["bulk_job"]


def _creator(conn: Connection, op: MethodInfo) -> Callable[..., Awaitable[Any]]:
    """The bulk operation: one row through the typed create method's raw twin.

    The raw twin answers the `RawResponse`, so the engine counts every row's HTTP attempts
    (retries included) and parses it into the model.
    """
    method: Callable[..., Awaitable[Any]] = raw_twin(
        getattr(getattr(conn.client, op.resource), op.name)
    )

    async def create(
        *,
        body: dict[str, Any],
        row: Row,
        row_key: str,
        row_digest: str,
        idempotency_key: str,
        retry_unsafe: bool | None = None,
    ) -> Any:
        # `retry_unsafe` comes from the engine (False unless --resend-unknown): passed on.
        kwargs, extra = body_arguments(op, body)
        return await method(
            **kwargs,
            extra_body=extra or None,
            idempotency_key=idempotency_key,
            retry_unsafe=retry_unsafe,
        )

    return create


def _lister(conn: Connection, op: MethodInfo | None) -> Lister | None:
    """The records in the target, as wire JSON (a --key is read by its column name)."""
    if op is None or any(p.required for p in op.query_params):
        return None
    method: Callable[..., Any] = getattr(getattr(conn.client, op.resource), op.name)

    async def records(*, skip: int = 0) -> AsyncIterator[Mapping[str, Any]]:
        async for record in method(limit=1000, skip=skip):
            yield record.to_dict() if isinstance(record, Model) else record

    return records


def bulk_job(
    options: ImportOptions,
    conn: Connection,
    journal: JournalStore | None,
    job_id: str | None,
    rows: Iterator[dict[str, Any]],
) -> BulkJob[Any]:
    op = options.operation
    key_field = options.key_field
    # With --key, a row whose answer was lost is found by its key; without, by its fields.
    lookup_records = _lister(conn, options.resource.related(op, "list"))
    lookup_key: Callable[[Any], str | None] | None = None
    if key_field is not None and lookup_records is not None:
        parser: RowParser = make_parser(options)

        def key_of_record(record: Any) -> str | None:
            return key_of(parser, record, key_field)

        lookup_key = key_of_record
    retrieve_op = options.resource.related(op, "retrieve")
    retrieve: Callable[[str], Awaitable[Any]] | None = None
    if retrieve_op is not None:
        retrieve = getattr(getattr(conn.client, retrieve_op.resource), retrieve_op.name)
    return conn.client.bulk.run(
        _creator(conn, op),
        rows,
        concurrency=options.concurrency,
        journal=journal,
        key="row_key",
        content="body",
        digest="row_digest",
        job_id=job_id,
        drain_timeout=options.drain_timeout,
        lookup=lookup_records,
        lookup_key=lookup_key,
        lookup_by="key" if key_field else "content",
        retrieve=retrieve,
        # The embedded sandbox replays by Idempotency-Key: resending is safe there.
        resend_unknown=options.resend_unknown or conn.embedded,
        target=conn.target_id,
        operation_name=_operation_name(options),
        rotated_credentials=options.rotated_key,
    )


def _operation_name(options: ImportOptions) -> str:
    """What the journal is bound to. A journal is one shard's: --journal of another shard is
    refused, not mixed in; a leased chunk's is the whole job's (its chunks share it)."""
    name = f"{options.operation.qualified_name} key={options.key_field or 'content'}"
    shard = options.shard
    return f"{name} shard={shard.label}" if shard is not None and not shard.leased else name
