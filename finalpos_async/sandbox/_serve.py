"""Running the sandbox from a shell: `serve()` (for the `finalpos sandbox` command) and `main()`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from .._constants import SANDBOX_API_KEY, SANDBOX_HOST
from ._faults import FaultConfig, parse_faults
from ._sandbox import Sandbox

__all__ = ["main", "serve"]


async def _serve(sandbox: Sandbox, *, announce: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # not on Windows, nor outside the main thread: Ctrl-C then ends asyncio.run instead
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with sandbox:
        if announce:
            print(f"Final POS sandbox listening on {sandbox.url}", flush=True)
            print(f"  x-api-key: {_shown_keys(sandbox.api_keys)}", flush=True)
            print(f"  storage:   {sandbox.db or 'memory'}", flush=True)
            if sandbox.faults.enabled:
                print(f"  faults:    {sandbox.faults}", flush=True)
            if not sandbox.honours_idempotency:
                print("  idempotency: ignored (Idempotency-Key is not honoured)", flush=True)
            if sandbox.request_log is not None:
                print(f"  request log: {sandbox.request_log}", flush=True)
            print("Press Ctrl-C to stop.", flush=True)
        await stop.wait()


def _shown_keys(keys: tuple[str, ...]) -> str:
    # the default key is public knowledge; a key the user chose is never printed
    if keys == (SANDBOX_API_KEY,):
        return SANDBOX_API_KEY
    if len(keys) == 1:
        return "(the key you gave)"
    return f"(the {len(keys)} keys you gave, each its own account and rate limit)"


def serve(
    *,
    host: str = SANDBOX_HOST,
    port: int = 8000,
    api_key: str | None = None,
    api_keys: Sequence[str] | None = None,
    db: str | os.PathLike[str] | None = None,
    faults: FaultConfig | str | None = None,
    seed: int | None = None,
    access_log: bool = True,
    announce: bool = True,
    honour_idempotency: bool = True,
    request_log: str | os.PathLike[str] | None = None,
) -> None:
    """Run a sandbox in the foreground until Ctrl-C or SIGTERM (blocks).

    The arguments are those of `Sandbox`; `announce` prints the URL and key on start-up.
    """
    sandbox = Sandbox(
        host=host,
        port=port,
        api_key=api_key,
        api_keys=api_keys,
        db=db,
        faults=faults,
        seed=seed,
        access_log=access_log,
        honour_idempotency=honour_idempotency,
        request_log=request_log,
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop
        asyncio.run(_serve(sandbox, announce=announce))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m finalpos_async.sandbox",
        description="Run a local, stateful Final POS API sandbox.",
    )
    parser.add_argument("--host", default=SANDBOX_HOST, help="interface (default %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    parser.add_argument(
        "--api-key",
        action="append",
        help="an accepted x-api-key; repeat it for several keys, each its own account (records "
        "of one key are invisible to the others) with its own rate limit (default: env "
        "FINALPOS_SANDBOX_API_KEY, several keys separated by commas, else "
        f"{SANDBOX_API_KEY})",
    )
    parser.add_argument("--db", help="SQLite file that keeps the data across restarts")
    parser.add_argument(
        "--faults",
        help="fault injection, e.g. rate=0.1,kinds=500+503+reset,delay=2,retry-after=1,"
        "rate-limit=50,burst=10 (the rate limit and burst apply to each API key); kinds are "
        "HTTP statuses, reset and delay (add -after, as in 503-after, to let the request take "
        "effect and lose its answer) and misfit (a write takes effect, its 2xx answer lacks "
        "the record's id)",
    )
    parser.add_argument("--seed", type=int, help="seed of the fault-rate generator")
    parser.add_argument(
        "--ignore-idempotency",
        action="store_true",
        help="process every POST as new, ignoring Idempotency-Key (to test that a client never "
        "duplicates records against a server that does not honour it)",
    )
    parser.add_argument(
        "--request-log",
        metavar="FILE",
        help="append one JSON line per request to FILE: t (arrival, seconds since the epoch), "
        "key (the key's fingerprint, never the key), method, path, status (0: connection reset)",
    )
    parser.add_argument("--quiet", action="store_true", help="no access log")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    keys: list[str] | None = args.api_key
    if keys is None:
        from_env = os.environ.get("FINALPOS_SANDBOX_API_KEY", "")
        keys = [key.strip() for key in from_env.split(",") if key.strip()] or None
    try:
        faults = parse_faults(args.faults) if args.faults else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        serve(
            host=args.host,
            port=args.port,
            api_keys=keys,
            db=args.db,
            faults=faults,
            seed=args.seed,
            access_log=not args.quiet,
            honour_idempotency=not args.ignore_idempotency,
            request_log=args.request_log,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
