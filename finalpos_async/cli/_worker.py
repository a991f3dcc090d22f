"""`finalpos import ... --journal postgresql://... --worker`: this process as one more worker
of a job whose chunks any number of workers take by lease (`bulk.ChunkBoard`).

The job is the file's (its id is the one `--shard` uses: target, create method, --key and the
file's name, so every worker of it agrees); the first worker splits it into --chunks chunks.
A worker claims a chunk, imports that chunk's rows exactly as `--shard K/N` would (its own
failed-rows file, `FILE.chunk-K-of-N.failed.jsonl`), with the lease renewed meanwhile and the
journal fenced by it, then marks it done and claims the next. A chunk whose worker died is
claimed again once its lease runs out; the worker that takes it over looks up the rows sent
under the old lease before sending anything. When no chunk is left to claim, the worker waits
for those other workers still hold (to take one over if its lease runs out) and ends when
every chunk is done: exit status 0 when every row of the job is in the target.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

import attrs
from rich.console import Console

from ..bulk import ChunkBoard, LeaseHolder, LeaseLostError, Work, keep_lease
from ._input import InputError
from ._options import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ImportOptions, shown
from ._shard import Shard

__all__ = ["WAIT_POLL", "ChunkRun", "ImportChunk", "describe", "run_worker"]

WAIT_POLL = 2.0  # seconds between looks at the chunks other workers hold, at most
# The outcomes a chunk records that mean a row is not in the target.
_NOT_IN_TARGET = ("invalid", "failed", "unknown", "not_sent")


@attrs.define
class ChunkRun:
    """One chunk's import: its lease (renewed by `keep_lease`) and, once it ran, its rows per
    outcome (`rows`, `invalid`, `created`, `found`, `skipped`, `failed`, `unknown`,
    `not_sent`), which the import fills in."""

    holder: LeaseHolder
    outcomes: dict[str, int] = attrs.field(factory=lambda: dict[str, int]())


ImportChunk = Callable[[ImportOptions, ChunkRun], Awaitable[int]]
"""Imports the rows of `options.shard` (a leased chunk) under `run`'s lease; the exit status."""


async def run_worker(
    options: ImportOptions, work: Work, console: Console, import_chunk: ImportChunk
) -> int:
    """Work on `work` until every chunk is done (see the module); the exit status."""
    assert isinstance(options.journal, str)  # the command refuses --worker without a URL
    board = ChunkBoard(options.journal)
    try:
        await asyncio.to_thread(board.open)
        work = await _same_input(board, work, console)
        console.print(
            f"Worker {board.owner} on job {work.work_id[:12]} ({work.chunks} chunks) in "
            f"{shown(options.journal)}."
        )
        said: set[str] = set()  # the waiting messages printed (each once)
        while True:
            lease = await asyncio.to_thread(
                board.claim, work_ids=[work.work_id], seconds=options.lease_seconds
            )
            if lease is None:
                if await _wait_or_end(board, work, console, said):
                    break
                continue
            shard = Shard(lease.chunk, lease.chunks, leased=True)
            taken = " (taken over: its rows sent before are looked up first)"
            console.print(f"Chunk {shard.label}{taken if lease.taken_over else ''}:")
            async with keep_lease(board, lease) as holder:
                run = ChunkRun(holder)
                try:
                    status = await import_chunk(attrs.evolve(options, shard=shard), run)
                except BaseException:
                    await asyncio.to_thread(board.release, holder.lease)  # taken again at once
                    raise
            if holder.lost is not None:
                console.print(f"[yellow]Chunk {shard.label} was lost:[/] {holder.lost}")
                continue
            if status == EXIT_INTERRUPTED or (status != EXIT_OK and not run.outcomes):
                # Stopped, or refused before sending (a row changed since it was imported, the
                # file changed): not done. Given back for a run that can finish it.
                await asyncio.to_thread(board.release, holder.lease)
                return status
            try:
                await asyncio.to_thread(board.finish, holder.lease, run.outcomes)
            except LeaseLostError as exc:
                console.print(f"[yellow]Chunk {shard.label}:[/] {exc}")
        return _job_summary(board, work, console)
    finally:
        board.close()


async def _same_input(board: ChunkBoard, work: Work, console: Console) -> Work:
    """The job as recorded, once this worker reads the same input as its other workers.

    A job that is done, whose file changed since (rows added, say), is opened again: the rows
    imported before are skipped by the journal. One still running with another file is refused:
    its chunks would not hold this file's rows.
    """
    recorded = await asyncio.to_thread(board.publish, work)
    mine = work.description.get("digest")
    if recorded.description.get("digest") == mine:
        return recorded
    if await asyncio.to_thread(board.reopen, work):
        console.print(
            f"{work.description.get('file')} changed since its job was done: every chunk is open "
            "again (the rows imported before are skipped)."
        )
        return work
    recorded = await asyncio.to_thread(board.publish, work)  # reopened by another worker?
    if recorded.description.get("digest") == mine:
        return recorded
    raise InputError(
        f"{work.description.get('file')} is not the file the other workers of job "
        f"{work.work_id[:12]} read (its SHA-256 starts {str(mine)[:12]}, theirs "
        f"{str(recorded.description.get('digest'))[:12]}): give every worker the same file, "
        "or let the job finish and run again (a changed file's new rows are imported then)"
    )


async def _wait_or_end(board: ChunkBoard, work: Work, console: Console, said: set[str]) -> bool:
    """No chunk to claim: True when every chunk is done, else wait a while (False). The
    chunks waited for are named once each (`said`)."""
    status = await asyncio.to_thread(board.status, work.work_id)
    if status.done:
        return True
    held = ", ".join(f"{c.chunk}/{work.chunks}" for c in status.chunks if c.state == "leased")
    if held not in said:
        said.add(held)
        console.print(
            f"Waiting for chunks {held}, held by other workers, to be done (one whose lease "
            "runs out is taken over here)."
        )
    left = status.next_expiry()
    await asyncio.sleep(min(WAIT_POLL, max(0.1, left or WAIT_POLL)))
    return False


def _job_summary(board: ChunkBoard, work: Work, console: Console) -> int:
    status = board.status(work.work_id)
    outcomes = status.outcomes()
    missing = sum(outcomes.get(name, 0) for name in _NOT_IN_TARGET)
    console.print(
        f"Job {work.work_id[:12]}: all {work.chunks} chunks done; "
        + ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in sorted(outcomes.items()))
        + "."
    )
    if missing:
        console.print(
            f"{missing} rows are not in the target: see the chunks' failed-rows files "
            "(FILE.chunk-K-of-N.failed.jsonl)."
        )
        return EXIT_FAILED
    return EXIT_OK


def describe(options: ImportOptions, target: str) -> dict[str, object]:
    """What a job's workers share about it (recorded with the job; no secrets), with the
    SHA-256 of the file (`digest`): every worker must read the same rows."""
    digest = hashlib.sha256()
    with options.file.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return {
        "digest": digest.hexdigest(),
        "command": "finalpos import",
        "resource": options.name,
        "method": options.operation.name,
        "file": str(options.file.absolute()),
        "format": options.fmt,
        "key": options.key_field,
        "target": target,
    }
