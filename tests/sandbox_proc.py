"""End-to-end helpers: a sandbox in a process of its own, its records, and the CLI as a process.

A plain module on `sys.path` (the tests directory), imported as ``from sandbox_proc import ...``:

- `sandbox_process`: ``python -m finalpos_async.sandbox --port 0`` in a child process, so the
  client and the server get a core each and a test can stop the server like a user would;
- `records`: every record of a collection over raw aiohttp, with faults switched off per request;
- `duplicates`: the values of a field seen more than once;
- `run_cli`: ``python -m finalpos_async.cli ARGS`` as a child process;
- `write_customers_csv`: an import file of customers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs

from finalpos_async._constants import SANDBOX_API_KEY

__all__ = [
    "ROOT",
    "SandboxProcess",
    "duplicates",
    "records",
    "run_cli",
    "sandbox_process",
    "write_customers_csv",
]

ROOT = Path(__file__).resolve().parent.parent
READY = "listening on "
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
PAGE = 1000
# A one-step fault script of "ok": the sandbox injects nothing into a request carrying it (no
# drawn fault, no rate limit), so reading the results back needs no retries.
NO_FAULTS = {"x-sandbox-fault": "ok"}


@attrs.frozen
class SandboxProcess:
    """A running sandbox child process: where it listens, the key it takes, its SQLite file."""

    url: str
    api_key: str
    process: asyncio.subprocess.Process
    db: Path | None
    api_keys: tuple[str, ...] = ()
    """Every key it takes (`api_key` is the first), each its own account."""


def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **(extra or {})}


@contextlib.asynccontextmanager
async def sandbox_process(
    *,
    db: Path | None = None,
    faults: str | None = None,
    seed: int | None = None,
    ignore_idempotency: bool = False,
    api_key: str | None = None,
    port: int = 0,
    api_keys: tuple[str, ...] = (),
    request_log: Path | None = None,
) -> AsyncIterator[SandboxProcess]:
    """Start a sandbox process (on a free port unless `port`); SIGTERM it (kill after 10 s) on exit.

    The arguments are those of ``python -m finalpos_async.sandbox``. The key goes through the
    environment, not the command line, and is always set, so an inherited
    ``FINALPOS_SANDBOX_API_KEY`` cannot change it; `api_keys` (several accounts) go there too,
    separated by commas.
    """
    keys = api_keys or (api_key or SANDBOX_API_KEY,)
    key = keys[0]
    args = ["-m", "finalpos_async.sandbox", "--port", str(port), "--quiet"]
    if db is not None:
        args += ["--db", str(db)]
    if faults is not None:
        args += ["--faults", faults]
    if seed is not None:
        args += ["--seed", str(seed)]
    if ignore_idempotency:
        args.append("--ignore-idempotency")
    if request_log is not None:
        args += ["--request-log", str(request_log)]
    # stderr to a file, not a pipe: nobody reads it while the test runs, and a full pipe would
    # block the server; it is shown if the sandbox fails to start
    with tempfile.TemporaryFile() as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            stdin=subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env=_child_env({"FINALPOS_SANDBOX_API_KEY": ",".join(keys)}),
        )
        try:
            url = await _announced_url(proc, stderr)
            yield SandboxProcess(url=url, api_key=key, process=proc, db=db, api_keys=keys)
        finally:
            await _stop(proc)


async def _announced_url(proc: asyncio.subprocess.Process, stderr: Any) -> str:
    """The URL of the ``Final POS sandbox listening on URL`` line, read within START_TIMEOUT."""
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    seen: list[str] = []
    while True:
        remaining = deadline - time.monotonic()
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(), max(remaining, 0.001))
        except asyncio.TimeoutError:
            raise RuntimeError(
                f"the sandbox did not announce its URL within {START_TIMEOUT:g} s; "
                f"stdout so far: {seen!r}"
            ) from None
        if not raw:  # EOF: the process ended before listening
            await proc.wait()
            stderr.seek(0)
            error = stderr.read().decode(errors="replace").strip()
            raise RuntimeError(
                f"the sandbox exited with status {proc.returncode} before listening; "
                f"stdout: {seen!r}; stderr: {error}"
            )
        line = raw.decode(errors="replace").strip()
        seen.append(line)
        if READY in line:
            return line.rsplit(READY, 1)[-1].strip()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def records(url: str, api_key: str, path: str = "/v1/api/customers") -> list[dict[str, Any]]:
    """Every record of the list endpoint `path`, paged with skip/limit (the path must take them).

    Raw aiohttp and ``x-sandbox-fault: ok``: the count reflects the server, not a client's
    retries, even when the sandbox injects faults.
    """
    found: list[dict[str, Any]] = []
    headers = {"x-api-key": api_key, **NO_FAULTS}
    async with aiohttp.ClientSession(url, headers=headers) as session:
        while True:
            params = {"skip": str(len(found)), "limit": str(PAGE)}
            async with session.get(path, params=params) as response:
                response.raise_for_status()
                page = await response.json()
            assert isinstance(page, list), f"GET {path} did not answer a list: {page!r}"
            assert len(page) <= PAGE, f"GET {path} ignores limit={PAGE}"
            found.extend(page)
            if len(page) < PAGE:
                return found


def duplicates(items: list[dict[str, Any]], field: str = "email") -> dict[str, int]:
    """The values of `field` seen more than once, with their counts (items without it skipped)."""
    counts = collections.Counter(str(item[field]) for item in items if item.get(field) is not None)
    return {value: n for value, n in counts.items() if n > 1}


def cli_command(api_key: str, url: str, *args: str) -> list[str]:
    """``python -m finalpos_async.cli --api-key KEY --base-url URL ARGS``, as a subprocess's
    argument list."""
    return [
        sys.executable,
        "-m",
        "finalpos_async.cli",
        "--api-key",
        api_key,
        "--base-url",
        url,
        *args,
    ]


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m finalpos_async.cli ARGS`` and capture its output as text.

    `env` adds to (or overrides) this process's environment; ``COLUMNS=200`` keeps rich from
    wrapping lines the test matches on.
    """
    return subprocess.run(
        [sys.executable, "-m", "finalpos_async.cli", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_child_env({"COLUMNS": "200", **(env or {})}),
    )


def write_customers_csv(path: Path, names: list[str]) -> None:
    """A CSV with header ``email,firstName,lastName``; rows ``{name}@example.com,Name,Test``."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "firstName", "lastName"])
        for name in names:
            writer.writerow([f"{name}@example.com", name[:1].upper() + name[1:], "Test"])
