"""`finalpos jobs --journal postgresql://...`: the jobs workers share in a PostgreSQL journal.

Without a job id, one line per job: its chunks by state, its rows per outcome and the rate it
achieved. With one (or the start of one), its chunks: done, leased by whom and for how much
longer, or expired (its worker stopped renewing: the next claim takes it over).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ..bulk import ChunkBoard, WorkStatus

__all__ = ["jobs_command"]

# The outcomes shown, in order (a chunk records these; see `_import._outcomes`).
_OUTCOMES = ("created", "found", "skipped", "invalid", "failed", "unknown", "not_sent")


@click.command("jobs")
@click.argument("job", required=False)
@click.option(
    "--journal",
    metavar="URL",
    envvar="FINALPOS_JOURNAL",
    show_envvar=True,
    required=True,
    help="The PostgreSQL journal the workers share (postgresql://user@host/db).",
)
def jobs_command(job: str | None, journal: str) -> None:
    """Show the jobs that `finalpos import --worker` processes share, or one JOB's chunks."""
    from ..bulk import ChunkBoard  # the bulk engine: loaded by the commands that use it
    from ._options import shown

    console = Console(soft_wrap=True)
    with ChunkBoard(journal) as board:
        ids = board.jobs()
        if job is None:
            console.print(_jobs_table(board, ids, shown(journal)))
            return
        matching = [work_id for work_id in ids if work_id.startswith(job)]
        if len(matching) != 1:
            found = "no job" if not matching else f"{len(matching)} jobs"
            raise click.UsageError(
                f"{found} in {shown(journal)} start with {job!r}: give more of its id "
                "(`finalpos jobs --journal URL` lists them)"
            )
        console.print(_chunks_table(board.status(matching[0])))


def _counts(status: WorkStatus) -> str:
    states = [c.state if not c.expired else "expired" for c in status.chunks]
    parts = [f"{states.count(s)} {s}" for s in ("done", "leased", "expired", "open")]
    return ", ".join(part for part in parts if not part.startswith("0 "))


def _rate(status: WorkStatus) -> str:
    """Rows per second from the first claim to the last chunk done (or now)."""
    started = [c.started_at for c in status.chunks if c.started_at is not None]
    if not started:
        return "-"
    ended = [c.done_at for c in status.chunks if c.done_at is not None]
    end = max(ended) if status.done and ended else time.time()
    rows = sum(c.outcomes.get("rows", 0) for c in status.chunks)
    return f"{rows / max(end - min(started), 1e-9):,.0f} rows/s"


def _outcomes(status: WorkStatus) -> str:
    total = status.outcomes()
    return ", ".join(f"{total[n]} {n.replace('_', ' ')}" for n in _OUTCOMES if total.get(n))


def _jobs_table(board: ChunkBoard, ids: list[str], where: str) -> Table:
    table = Table(title=f"Jobs in {where}", title_justify="left")
    for column in ("job", "tenant", "file", "chunks", "rows (done chunks)", "rate"):
        table.add_column(column)
    for work_id in ids:
        status = board.status(work_id)
        description = status.work.description
        table.add_row(
            work_id[:12],
            status.work.tenant or "-",
            str(description.get("file", "-")),
            _counts(status),
            _outcomes(status) or "-",
            _rate(status),
        )
    return table


def _chunks_table(status: WorkStatus) -> Table:
    work = status.work
    table = Table(
        title=f"Job {work.work_id}: {_counts(status)}; {_outcomes(status) or 'no rows done yet'}"
        f"; {_rate(status)}",
        title_justify="left",
    )
    for column in ("chunk", "state", "worker", "lease", "claims", "rows"):
        table.add_column(column)
    for chunk in status.chunks:
        lease = "-"
        if chunk.state == "leased" and chunk.lease_left is not None:
            lease = "expired" if chunk.expired else f"{chunk.lease_left:.0f} s left"
        table.add_row(
            f"{chunk.chunk}/{work.chunks}",
            "expired" if chunk.expired else chunk.state,
            chunk.owner or "-",
            lease,
            str(chunk.claims),
            str(chunk.outcomes.get("rows", "-")),
        )
    return table
