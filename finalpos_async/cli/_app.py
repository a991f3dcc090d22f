"""The `finalpos` command: click groups and options; the work is in `_import` and `_calls`."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import attrs
import click
from rich.console import Console
from rich.markup import escape

from .._constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    BULK_CONCURRENCY,
    BULK_DRAIN_TIMEOUT,
    DEFAULT_LEASE,
    IMPORT_MAX_FIELD_BYTES,
    REDIS_URL_ENV,
    WORKER_CHUNKS,
)
from .._exceptions import FinalPOSError
from .._method_info import MethodInfo
from .._redis_limit import DEFAULT_REDIS_KEY
from .._secret import conceal
from .._version import __version__
from ._calls import call_one, list_arguments, print_json
from ._connect import Settings, connect, proxy_options, shared_rate_url
from ._export import (
    EXPORT_CONCURRENCY,
    EXPORT_PAGE_SIZE,
    open_writer,
    response_item_schema,
    run_export,
)
from ._heap import tune_for_bulk_work
from ._jobs import jobs_command
from ._rerun import command_prefix, rerun_flags
from ._shard import Shard, shard_option
from ._spec import MethodError, Resource, load_resources, lookup

__all__ = ["cli"]

COMMANDLINE = click.core.ParameterSource.COMMANDLINE


def _console() -> Console:
    # Human output (progress, tables, notes) goes to stderr; stdout carries only data (JSON, CSV).
    return Console(stderr=True, highlight=False)


# The method kind each command runs.
_KINDS = {"import": "create", "export": "list", "get": "retrieve", "delete": "delete"}

_RESOURCE_HELP = (
    "RESOURCE is the client's attribute (customers, custom_tables or custom-tables); where it "
    "has several methods for this command, RESOURCE.METHOD picks one (custom_tables.list_rows). "
    "`finalpos resources` lists them."
)


def _operation(name: str, command: str) -> tuple[Resource, MethodInfo]:
    """The resource and method `name` means for `command`, or a usage error naming the choices."""
    kind = _KINDS[command]
    choice = lookup(name)
    if choice is None:
        names = ", ".join(r.name for r in load_resources().values() if r.methods(kind))
        raise click.BadParameter(
            f"unknown resource {name!r}; choose one of: {names}", param_hint="RESOURCE"
        )
    try:
        op = choice.pick(kind)
    except MethodError as exc:
        message = str(exc)
        if not choice.resource.methods(kind):
            names = ", ".join(r.name for r in load_resources().values() if r.methods(kind))
            message += f"; choose one of: {names}"
        raise click.BadParameter(message, param_hint="RESOURCE") from None
    note = choice.note(op)
    if note is not None:
        _console().print(f"[yellow]note:[/] {note}", soft_wrap=True)
    return choice.resource, op


def _secret(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The key as a `Secret` from here on: no frame's locals (nor click's params) show it."""
    return conceal(value) if value else value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--api-key",
    envvar=API_KEY_ENV,
    show_envvar=True,
    callback=_secret,
    help="API key; without one, commands run against an embedded sandbox.",
)
@click.option("--base-url", envvar=BASE_URL_ENV, show_envvar=True, help="API base URL.")
@click.option(
    "--sandbox-db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the embedded sandbox's data in this SQLite file (no-key mode only).",
)
@click.option("--max-retries", type=click.IntRange(0), help="Retries per request (default 3).")
@click.option(
    "--timeout", type=click.FloatRange(0, min_open=True), help="Read timeout per attempt (s)."
)
@proxy_options
@click.version_option(__version__, prog_name="finalpos")
@click.pass_context
def cli(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    sandbox_db: Path | None,
    max_retries: int | None,
    timeout: float | None,
    proxy: str | None,
    trust_env: bool,
) -> None:
    """Final POS from the command line: bulk import, export, get and delete, local sandbox."""
    ctx.obj = Settings(
        api_key=api_key or None,
        base_url=base_url or None,
        sandbox_db=sandbox_db,
        max_retries=max_retries,
        timeout=timeout,
        proxy=proxy,
        trust_env=trust_env,
    )


@cli.command("import")
@click.argument("resource")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "csv", "jsonl"]),
    default="auto",
    show_default=True,
    help="Input format; auto goes by the file name (.jsonl/.ndjson/.json are JSON Lines).",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1),
    default=BULK_CONCURRENCY,
    show_default=True,
    help="Rows in flight at once (capped at the connection pool).",
)
@click.option(
    "--rate",
    type=click.FloatRange(0, min_open=True),
    help="HTTP requests per second at most, retries included.",
)
@click.option(
    "--burst",
    type=click.FloatRange(1),
    help="Requests --rate lets through back to back after a pause (default: a tenth of a "
    "second's worth, at least 1); at most the API's own burst.",
)
@click.option(
    "--redis-url",
    envvar=REDIS_URL_ENV,
    show_envvar=True,
    help="Share --rate with every process naming this Redis and --redis-key (needs the redis "
    "extra).",
)
@click.option(
    "--redis-key",
    default=DEFAULT_REDIS_KEY,
    show_default=True,
    help="Redis key of the shared --rate (the library's RedisRateLimiter default).",
)
@click.option(
    "--shard",
    metavar="K/N",
    callback=shard_option,
    help="Import only the rows of shard K of N (by identity; stable across machines); each "
    "shard has its own journal and failed-rows file.",
)
@click.option(
    "--worker",
    is_flag=True,
    help="Be one more worker of this file's job: take its chunks by lease from the PostgreSQL "
    "--journal, with any number of other workers (started anywhere, at any time).",
)
@click.option(
    "--chunks",
    type=click.IntRange(1, 100_000),
    default=WORKER_CHUNKS,
    show_default=True,
    help="With --worker: the chunks a new job's rows are split into (by identity).",
)
@click.option(
    "--lease",
    "lease_seconds",
    type=click.FloatRange(3),
    default=DEFAULT_LEASE,
    show_default=True,
    help="With --worker: seconds a chunk's lease lasts (renewed every third); a killed "
    "worker's chunk is taken over once it runs out.",
)
@click.option(
    "--journal",
    metavar="PATH|URL",
    help="Journal to resume from: a SQLite file (default FILE.journal when the data is kept) or "
    "a PostgreSQL database, postgresql://user@host/db (pip install 'finalpos[postgres]'; the "
    "password from PGPASSWORD or ~/.pgpass).",
)
@click.option("--no-journal", is_flag=True, help="Do not keep a journal.")
@click.option(
    "--rotated-key",
    is_flag=True,
    help="The API key was rotated since the journal was written (the same account): continue "
    "the journal with the new key.",
)
@click.option(
    "--key",
    "key_field",
    help="Column that identifies a row across runs (default: the row's whole content).",
)
@click.option(
    "--failed-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where failed rows go (default FILE.failed.jsonl).",
)
@click.option(
    "--encoding",
    default="utf-8-sig",
    show_default=True,
    help="Text encoding of FILE (e.g. cp1252 for files saved by Excel on Windows).",
)
@click.option(
    "--max-field-bytes",
    type=click.IntRange(1),
    default=IMPORT_MAX_FIELD_BYTES,
    show_default=True,
    help="Largest CSV cell or JSON Lines line read (UTF-8 bytes); a larger one is an invalid "
    "row, not read.",
)
@click.option(
    "--keep-whitespace",
    is_flag=True,
    help="Keep CSV cells as given; by default spaces around a cell's value are removed (a "
    "spreadsheet's padding), so ' ann@example.com ' is ann@example.com.",
)
@click.option(
    "--resend-unknown",
    is_flag=True,
    help="Send rows whose outcome is unknown (answer lost) again under their idempotency key: "
    "only when the server honours Idempotency-Key or you checked they are not in the target.",
)
@click.option(
    "--validate-only",
    is_flag=True,
    help="Check every row; send nothing and write nothing (no journal, no failed-rows file).",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(0),
    default=BULK_DRAIN_TIMEOUT,
    show_default=True,
    help="On Ctrl-C, seconds rows in flight may take to finish.",
)
@click.pass_obj
def import_command(
    settings: Settings,
    resource: str,
    file: Path,
    fmt: str,
    concurrency: int,
    rate: float | None,
    burst: float | None,
    redis_url: str | None,
    redis_key: str,
    shard: Shard | None,
    worker: bool,
    chunks: int,
    lease_seconds: float,
    journal: str | None,
    no_journal: bool,
    rotated_key: bool,
    key_field: str | None,
    failed_file: Path | None,
    encoding: str,
    max_field_bytes: int,
    keep_whitespace: bool,
    resend_unknown: bool,
    validate_only: bool,
    drain_timeout: float,
) -> None:
    """Create one RESOURCE per row of FILE (CSV or JSON Lines), with its typed create method.

    Every row is checked first; bad rows are listed with line and field. Rows that are not in
    the target at the end go to FILE.failed.jsonl with their error; importing that file (after
    fixing what its errors say) continues the same job and never creates a row twice. Exit
    status 0 only when every row is in the target.

    \b
    A row is identified by its content, or by --key COLUMN (a natural key such as email):
    rows added to FILE are imported on a re-run, rows already imported are skipped.

    \b
    CSV headers: camelCase or snake_case, nested fields with dots (billing.city);
    lists as a;b;c or a JSON array; objects as JSON; cells are trimmed of spaces
    around them unless --keep-whitespace.

    \b
    RESOURCE: customers, products, ... or custom_tables.create_row (see `finalpos resources`).
    """
    if journal is not None and no_journal:
        raise click.UsageError("--journal and --no-journal exclude each other")
    if burst is not None and rate is None:
        raise click.UsageError("--burst is the burst of --rate: give --rate too")
    # the import's own modules (the row parser, its options): loaded by the command that runs it
    from ._import import run_import
    from ._options import ImportOptions, journal_spec, worker_problem
    from ._rows import sniff_format

    ctx = click.get_current_context()
    given = {n for n in ("chunks", "lease_seconds") if ctx.get_parameter_source(n) is COMMANDLINE}
    problem = worker_problem(worker, journal, shard, validate_only, given)
    if problem is not None:
        raise click.UsageError(problem)
    res, op = _operation(resource, "import")
    from_line = ctx.get_parameter_source("redis_url") is click.core.ParameterSource.COMMANDLINE
    redis_url = shared_rate_url(redis_url, rate, from_command_line=from_line, say=_console().print)
    options = ImportOptions(
        resource=res,
        method=op.name,
        file=file,
        fmt=sniff_format(file) if fmt == "auto" else fmt,
        concurrency=concurrency,
        rate=rate,
        burst=burst,
        journal=journal_spec(journal),
        no_journal=no_journal,
        rotated_key=rotated_key,
        key_field=key_field,
        failed_file=failed_file,
        validate_only=validate_only,
        drain_timeout=drain_timeout,
        encoding=encoding,
        max_field_bytes=max_field_bytes,
        keep_whitespace=keep_whitespace,
        resend_unknown=resend_unknown,
        command_prefix=command_prefix(ctx),
        rerun_flags=rerun_flags(ctx),
        shard=shard,
        redis_url=redis_url,
        redis_key=redis_key,
        worker=worker,
        chunks=chunks,
        lease_seconds=lease_seconds,
    )
    sys.exit(_guard(lambda: run_import(options, settings, _console())))


cli.add_command(jobs_command)


@cli.command("export")
@click.argument("resource")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "parquet"]),
    default="jsonl",
    show_default=True,
    help="jsonl keeps every field; csv and parquet have one column per field of the spec "
    "(parquet typed: decimals, timestamps, lists, structs; needs --output and the parquet extra).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of stdout.",
)
@click.option("--limit", type=click.IntRange(1), help="Stop after this many items.")
@click.option(
    "--page-size",
    type=click.IntRange(1, EXPORT_PAGE_SIZE),
    default=EXPORT_PAGE_SIZE,
    show_default=True,
    help="Items per request (the API documents no maximum; 1000 is assumed to be allowed).",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1),
    default=EXPORT_CONCURRENCY,
    show_default=True,
    help="Pages requested at once; the output stays in API order.",
)
@click.option(
    "--rate",
    type=click.FloatRange(0, min_open=True),
    help="HTTP requests per second at most, retries included.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A parameter of the list method, e.g. --param table-id=ID (repeatable).",
)
@click.pass_obj
def export_command(
    settings: Settings,
    resource: str,
    fmt: str,
    output: Path | None,
    limit: int | None,
    page_size: int,
    concurrency: int,
    rate: float | None,
    params: tuple[str, ...],
) -> None:
    """Stream every RESOURCE to stdout (or --output), in API order, a few pages at a time.

    \b
    RESOURCE: customers, products, ... or RESOURCE.METHOD where the resource has several
    lists: custom_tables.list_rows --param table-id=ID (see `finalpos resources`).
    """
    res, op = _operation(resource, "export")
    arguments = _list_arguments(op, params)
    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet writes a file: give --output FILE.parquet")
    console = _console()
    settings = attrs.evolve(settings, rate_limit=rate)

    async def main() -> int:
        async with connect(settings, console.print, reads=True) as conn:
            method: Any = getattr(getattr(conn.client, op.resource), op.name)
            paginator = method(**arguments, limit=page_size, max_items=limit)
            schema = response_item_schema(op)
            with open_writer(fmt, output, schema, paginator.item) as writer:
                count = await run_export(
                    paginator, writer, concurrency=concurrency, console=console, noun=res.name
                )
            console.print(f"{count} {res.name} exported.")
        return 0

    tune_for_bulk_work()
    sys.exit(_guard(lambda: asyncio.run(main())))


@cli.command("get")
@click.argument("resource")
@click.argument("ident", metavar="ID")
@click.pass_obj
def get_command(settings: Settings, resource: str, ident: str) -> None:
    """Print one RESOURCE by ID as JSON (its retrieve method; RESOURCE.METHOD picks another)."""
    _, op = _operation(resource, "get")
    sys.exit(_guard(lambda: asyncio.run(_single(settings, op, ident))))


@cli.command("delete")
@click.argument("resource")
@click.argument("ident", metavar="ID")
@click.pass_obj
def delete_command(settings: Settings, resource: str, ident: str) -> None:
    """Delete one RESOURCE by ID; prints the API's answer as JSON."""
    _, op = _operation(resource, "delete")
    sys.exit(_guard(lambda: asyncio.run(_single(settings, op, ident))))


def _list_arguments(op: MethodInfo, params: tuple[str, ...]) -> dict[str, str]:
    given: dict[str, str] = {}
    for text in params:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{text!r} is not NAME=VALUE", param_hint="--param")
        given[name.strip()] = value
    try:
        return list_arguments(op, given)
    except MethodError as exc:
        raise click.BadParameter(str(exc), param_hint="--param") from None


async def _single(settings: Settings, op: MethodInfo, ident: str) -> int:
    async with connect(settings, _console().print, reads=True) as conn:
        print_json(await call_one(conn.client, op, ident))
    return 0


@cli.command("resources")
def resources_command() -> None:
    """List the resources and what each command can do with them (and with which methods)."""
    console = Console(highlight=False)
    for r in load_resources().values():
        console.print(f"{r.name:<20} {_abilities(r) or '-'}", soft_wrap=True)


def _abilities(resource: Resource) -> str:
    """`import, export, get, delete`, with the method names where they are not the usual ones."""
    parts: list[str] = []
    for command, kind in _KINDS.items():
        names = [op.name for op in resource.methods(kind)]
        if names == [kind]:
            parts.append(command)
        elif names:
            parts.append(f"{command} ({', '.join(f'{resource.name}.{n}' for n in names)})")
    return ", ".join(parts)


@cli.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--db", type=click.Path(dir_okay=False), help="SQLite file to keep the data in.")
@click.option(
    "--faults",
    help="Fault injection, e.g. rate=0.1,kinds=500+503+reset,retry-after=1. Kinds: HTTP "
    "statuses, reset, delay (each with -after, as in 503-after: the request takes effect, its "
    "answer is lost) and misfit (a write takes effect, its 2xx answer lacks the id).",
)
@click.option("--seed", type=int, help="Seed of the fault-rate generator.")
@click.option(
    "--ignore-idempotency",
    is_flag=True,
    help="Process every POST as new, ignoring Idempotency-Key (to test a client against a "
    "server that does not honour it).",
)
@click.option("--quiet", is_flag=True, help="No access log.")
def sandbox_command(
    host: str,
    port: int,
    db: str | None,
    faults: str | None,
    seed: int | None,
    ignore_idempotency: bool,
    quiet: bool,
) -> None:
    """Run the local Final POS sandbox server until Ctrl-C."""
    import logging

    from ..sandbox import parse_faults, serve

    try:
        config = parse_faults(faults) if faults else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from exc
    if not quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    serve(
        host=host,
        port=port,
        db=db,
        faults=config,
        seed=seed,
        access_log=not quiet,
        honour_idempotency=not ignore_idempotency,
    )


def _guard(run: Any) -> int:
    """Run a command body; API and input errors become one red line and exit status 1."""
    try:
        status: int = run()
    except BrokenPipeError:
        # The reader went away (`finalpos export ... | head`): end quietly, as `cat` does.
        # stdout is pointed at /dev/null so that the interpreter's final flush cannot fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by it
    except FinalPOSError as exc:
        # escape: a message's own brackets (`pip install 'finalpos[postgres]'`, an IPv6 host)
        # are text, not rich markup.
        _console().print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return 1
    except (ValueError, TypeError, OSError, sqlite3.Error) as exc:
        _console().print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        _console().print("[yellow]interrupted[/]")
        return 130
    return status
