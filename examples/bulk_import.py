"""Bulk import with the library: a CSV of customers into Final POS, resumable, with a report.

    python examples/bulk_import.py [CSV] [--journal FILE]

With FINALPOS_API_KEY set it talks to the real API (FINALPOS_BASE_URL to point elsewhere); without
it, to an embedded sandbox. The journal makes the script resumable: stop it (Ctrl-C, a crash) and
run it again with the same journal, and rows already created are skipped while the others are
sent again under the same idempotency keys, so nothing is created twice.
(`finalpos import customers FILE` does all of this, plus row checks and a progress bar.)
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finalpos_async import AsyncFinalPOS
from finalpos_async.bulk import ItemStatus

HERE = Path(__file__).parent


def rows(path: Path) -> Iterator[dict[str, Any]]:
    """The CSV's rows as keyword arguments of `client.customers.create`, read lazily."""
    with path.open(encoding="utf-8", newline="") as stream:
        for line, row in enumerate(csv.DictReader(stream), start=2):
            if "@" not in row["email"]:
                # The library sends what it is given; checking rows is the caller's job
                # (`finalpos import` checks every field against the spec).
                print(f"line {line}: skipped, no valid email")
                continue
            billing = {
                "address1": row["billing.address1"],
                "city": row["billing.city"],
                "state": row["billing.state"],
                "country": row["billing.country"],
                "post_code": row["billing.post_code"],
            }
            yield {
                "email": row["email"],
                "first_name": row["first_name"],
                "last_name": row["last_name"],
                "phone": row["phone"] or None,
                "tags": [t for t in row["tags"].split(";") if t],
                "billing": {k: v for k, v in billing.items() if v},
            }


async def main(source: Path, journal: Path | None, limit: int | None) -> int:
    client = AsyncFinalPOS() if os.environ.get("FINALPOS_API_KEY") else AsyncFinalPOS(sandbox=True)
    async with client:
        items: Iterator[dict[str, Any]] = rows(source)
        if limit is not None:
            items = (row for n, row in enumerate(items) if n < limit)
        job = client.bulk.run(
            client.customers.create,  # called as create(**row, idempotency_key=...)
            items,
            concurrency=16,
            journal=journal,
            key="email",  # a row's identity across runs (default: its position)
        )
        async for result in job:
            if result.status is ItemStatus.FAILED:
                # Each failure carries the typed error and the attempts made; the run goes on.
                print(f"row {result.index + 2} ({result.key}): {result.reason}")
        report = job.report
        print(
            f"created {report.succeeded}, already there {report.skipped}, failed {report.failed} "
            f"in {report.elapsed:.1f} s ({report.rate:.0f} rows/s, {report.attempts} attempts)"
        )
        return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("csv", nargs="?", type=Path, default=HERE / "customers.csv")
    parser.add_argument("--journal", type=Path, help="SQLite journal that makes re-runs resume")
    parser.add_argument("--limit", type=int, help="import only the first N rows")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(main(args.csv, args.journal, args.limit)))
