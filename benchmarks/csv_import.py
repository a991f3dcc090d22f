"""`finalpos import customers FILE.csv` against the cheapest program doing the same requests.

`run.py` runs two import cells in its interleaved rounds, each a fresh child process against the
canned server's empty collection (`canned.EMPTY_TARGET`), and takes the child's CPU time
(user + sys from `os.wait4`) per CSV row, interpreter start-up included for both:

- `finalpos-import`: `python -m finalpos_async.cli ... import customers FILE.csv` with its
  defaults (concurrency 16, a journal, validation of every row), as a user runs it;
- `raw-import` (the floor): this file run as `python csv_import.py URL FILE`: `csv.DictReader`,
  each row made into the create body (camelCase, dotted columns nested, `;` lists split), posted
  by raw aiohttp with orjson at the same concurrency, status checked, answer decoded; no journal,
  no validation, no retries.

Both read the same file of unique rows written by `scripts/make_example_csv.py`.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import canned

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
CONCURRENCY = 16
"""The CLI's default `--concurrency`; the floor uses the same."""

VARIANTS = ("raw-import", "finalpos-import")


def make_csv(path: Path, rows: int) -> None:
    """Write `rows` unique valid customer rows to `path` (the repository's example generator)."""
    script = REPO / "scripts" / "make_example_csv.py"
    cmd = [sys.executable, str(script), "--rows", str(rows), "--invalid", "0", "-o", str(path)]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _row_builder(header: list[str]) -> Callable[[dict[str, str]], dict[str, Any]]:
    """Map a CSV row to a create body; the column paths are worked out once, not per row."""
    paths = {column: [_camel(part) for part in column.split(".")] for column in header}

    def build(row: dict[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for column, value in row.items():
            if not value:
                continue
            *parents, leaf = paths[column]
            target = body
            for parent in parents:
                target = target.setdefault(parent, {})
            target[leaf] = value.split(";") if leaf == "tags" else value
        return body

    return build


async def _raw_import(url: str, source: Path) -> int:
    import aiohttp
    import orjson

    created = 0
    post_headers = {"content-type": "application/json"}
    with source.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        build = _row_builder(list(reader.fieldnames or ()))
        rows: Iterator[dict[str, str]] = iter(reader)
        async with aiohttp.ClientSession(headers={"x-api-key": canned.API_KEY}) as session:
            create_url = url + canned.CREATE_PATH

            async def worker() -> None:
                nonlocal created
                for row in rows:
                    body = orjson.dumps(build(row))
                    async with session.post(create_url, data=body, headers=post_headers) as resp:
                        if resp.status != 201:
                            raise RuntimeError(f"POST answered {resp.status}")
                        orjson.loads(await resp.read())
                    created += 1

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return created


def _wait(cmd: list[str], folder: Path) -> tuple[int, float, float, str]:
    """Run `cmd` in `folder`; its exit code, CPU seconds (wait4), wall seconds and output."""
    log = folder / "output.txt"
    with log.open("w") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return proc.returncode, usage.ru_utime + usage.ru_stime, wall, log.read_text(errors="replace")


def run_cell(variant: str, url: str, source: Path, rows: int) -> dict[str, Any]:
    """One import of `source` by `variant` in a child process; a result line as `variants.py`'s."""
    base = url + canned.EMPTY_TARGET
    with tempfile.TemporaryDirectory(prefix="finalpos-bench-import-") as tmp:
        folder = Path(tmp)
        if variant == "raw-import":
            cmd = [sys.executable, str(Path(__file__).resolve()), base, str(source)]
        elif variant == "finalpos-import":
            cmd = [sys.executable, "-m", "finalpos_async.cli", "--api-key", canned.API_KEY]
            cmd += ["--base-url", base, "import", "customers", str(source)]
            cmd += ["--journal", str(folder / "run.journal")]
            cmd += ["--failed-file", str(folder / "failed.jsonl")]
        else:
            raise ValueError(f"unknown import variant {variant!r}")
        code, cpu, wall, output = _wait(cmd, folder)
    done = _created(variant, output)
    if code != 0 or done != rows:
        tail = output.strip().splitlines()[-3:]
        return {"status": "failed", "reason": f"exit {code}, {done} of {rows} rows: {tail}"}
    return {"status": "ok", "cpu_s": cpu, "wall_s": wall, "requests": rows}


def _created(variant: str, output: str) -> int | None:
    pattern = r"created\s*│\s*([\d,]+)" if variant == "finalpos-import" else r"^created (\d+)$"
    found = re.search(pattern, output, re.MULTILINE)
    return int(found.group(1).replace(",", "")) if found else None


def main() -> None:
    """The raw floor: `python csv_import.py BASE_URL FILE.csv` prints `created N`."""
    url, source = sys.argv[1], Path(sys.argv[2])
    print(f"created {asyncio.run(_raw_import(url, source))}")


if __name__ == "__main__":
    main()
