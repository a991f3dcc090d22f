"""One benchmark cell (a client variant doing one operation), run in a fresh interpreter.

`run.py` starts `python benchmarks/variants.py VARIANT OPERATION --url URL --n N ...` once per
cell and repetition. This process builds the client, warms it up (connections open, caches
filled, lazy imports done), then measures N operations between two `getrusage(RUSAGE_SELF)`
calls (user + system time of *all* threads of this process, so the sync facade's loop thread is
counted) and prints one JSON line:

    {"status": "ok", "cpu_s": ..., "wall_s": ..., "requests": ..., "maxrss_kib": ...}
    {"status": "unavailable", "reason": "not available yet: ..."}

Operations: `retrieve` (GET one customer), `create` (POST a body, 201), `list` (walk the
950-record collection page by page with limit=100: ten requests, the last page short).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import resource
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import canned

ASYNC_CONCURRENCY = 64
OPERATIONS = ("retrieve", "create", "list")


class Unavailable(Exception):
    """The variant cannot run here (a peer library missing, finalpos code not written yet)."""


def _require(module: str, why: str = "") -> Any:
    """Import `module` or raise `Unavailable` saying what is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(why or f"not installed: {module} ({exc})") from exc


def _check_record(record: Any) -> None:
    """Fail loudly if a client returned nothing (a broken variant must not look fast)."""
    if record is None:
        raise RuntimeError("client returned None instead of a customer")


def _check_walk(records: int) -> None:
    if records != canned.LIST_TOTAL:
        raise RuntimeError(f"list walk returned {records} records, expected {canned.LIST_TOTAL}")


# --------------------------------------------------------------------------------------------
# Async variants: each is an async context manager yielding an object with three coroutines.


class AsyncOps:
    """The three operations of one async client; `walk` returns the number of records seen."""

    retrieve: Callable[[int], Awaitable[Any]]
    create: Callable[[int], Awaitable[Any]]
    walk: Callable[[], Awaitable[int]]


@contextlib.asynccontextmanager
async def _aiohttp_ops(url: str, *, use_orjson: bool) -> AsyncIterator[AsyncOps]:
    aiohttp = _require("aiohttp")
    headers = {"x-api-key": canned.API_KEY}
    if use_orjson:
        orjson = _require("orjson")
        loads: Callable[[bytes], Any] = orjson.loads
        dumps: Callable[[Any], bytes] = orjson.dumps
    else:
        loads = json.loads

        def dumps(value: Any) -> bytes:
            return json.dumps(value).encode()

    post_headers = {"content-type": "application/json"}
    one_url = url + canned.RETRIEVE_PATH.format(id=canned.CUSTOMER_ID)
    create_url = url + canned.CREATE_PATH
    list_url = url + canned.LIST_PATH
    # The key is set once on the session, as a careful aiohttp user does: the floor does not
    # pay for merging a headers mapping into every request.
    async with aiohttp.ClientSession(headers=headers) as session:
        ops = AsyncOps()

        async def retrieve(i: int) -> Any:
            async with session.get(one_url) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"GET answered {resp.status}")
                return loads(await resp.read())

        async def create(i: int) -> Any:
            body = dumps(canned.create_body(i))
            async with session.post(create_url, data=body, headers=post_headers) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"POST answered {resp.status}")
                return loads(await resp.read())

        async def walk() -> int:
            skip, seen = 0, 0
            while True:
                params = {"skip": skip, "limit": canned.PAGE_LIMIT}
                async with session.get(list_url, params=params) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"GET page answered {resp.status}")
                    page = loads(await resp.read())
                got = len(page)
                # Drop the page before the next request: kept alive across it, 100 records
                # survive into older generations and trigger full collections on every walk.
                del page
                seen += got
                if got < canned.PAGE_LIMIT:
                    return seen
                skip += got

        ops.retrieve, ops.create, ops.walk = retrieve, create, walk
        yield ops


@contextlib.asynccontextmanager
async def _httpx_ops(url: str) -> AsyncIterator[AsyncOps]:
    httpx = _require("httpx")
    # httpx keeps only 20 idle connections by default; at concurrency 64 it would reconnect on
    # most requests, so it gets the same pool of 64 kept-alive connections as the others.
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    headers = {"x-api-key": canned.API_KEY}
    one_path = canned.RETRIEVE_PATH.format(id=canned.CUSTOMER_ID)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:
        ops = AsyncOps()

        async def retrieve(i: int) -> Any:
            resp = await client.get(one_path)
            resp.raise_for_status()
            return resp.json()

        async def create(i: int) -> Any:
            resp = await client.post(canned.CREATE_PATH, json=canned.create_body(i))
            resp.raise_for_status()
            return resp.json()

        async def walk() -> int:
            skip, seen = 0, 0
            while True:
                params = {"skip": skip, "limit": canned.PAGE_LIMIT}
                resp = await client.get(canned.LIST_PATH, params=params)
                resp.raise_for_status()
                page = resp.json()
                got = len(page)
                # Drop the page before the next request: kept alive across it, 100 records
                # survive into older generations and trigger full collections on every walk.
                del page
                seen += got
                if got < canned.PAGE_LIMIT:
                    return seen
                skip += got

        ops.retrieve, ops.create, ops.walk = retrieve, create, walk
        yield ops


def _peer_modules(peer_path: str | None) -> dict[str, Any]:
    """Import the generated peer client's modules for the three customer operations."""
    if not peer_path:
        raise Unavailable("openapi-python-client peer was not generated (see the run's notes)")
    sys.path.insert(0, peer_path)
    pkg = "finalpos_peer_client"
    _require("httpx")
    return {
        "client": _require(f"{pkg}.client"),
        "find_one": _require(f"{pkg}.api.customer.customer_controller_find_one"),
        "create": _require(f"{pkg}.api.customer.customer_controller_create"),
        "find_all": _require(f"{pkg}.api.customers.customers_controller_find_all"),
        "models": _require(f"{pkg}.models"),
    }


def _peer_client(mods: dict[str, Any], url: str) -> Any:
    httpx = _require("httpx")
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    return mods["client"].AuthenticatedClient(
        base_url=url,
        token=canned.API_KEY,
        prefix="",
        auth_header_name="x-api-key",
        raise_on_unexpected_status=True,
        httpx_args={"limits": limits},
    )


def _peer_create_body(models: Any, i: int) -> Any:
    """Build the create body the way a user of the generated client would: its own models."""
    fields = canned.create_fields(i)
    return models.CreateCustomerDto(
        email=fields["email"],
        first_name=fields["first_name"],
        last_name=fields["last_name"],
        phone=fields["phone"],
        tags=fields["tags"],
        billing=models.AddressDto(**fields["billing"]),
    )


@contextlib.asynccontextmanager
async def _peer_async_ops(url: str, peer_path: str | None) -> AsyncIterator[AsyncOps]:
    mods = _peer_modules(peer_path)
    models = mods["models"]
    customer_cls = models.CustomerDto
    async with _peer_client(mods, url) as client:
        ops = AsyncOps()

        async def retrieve(i: int) -> Any:
            result = await mods["find_one"].asyncio(canned.CUSTOMER_ID, client=client)
            if not isinstance(result, customer_cls):
                raise RuntimeError(f"generated client returned {type(result).__name__}")
            return result

        async def create(i: int) -> Any:
            body = _peer_create_body(models, i)
            result = await mods["create"].asyncio(client=client, body=body)
            if not isinstance(result, customer_cls):
                raise RuntimeError(f"generated client returned {type(result).__name__}")
            return result

        async def walk() -> int:
            skip, seen = 0, 0
            while True:
                page = await mods["find_all"].asyncio(
                    client=client, skip=skip, limit=canned.PAGE_LIMIT
                )
                if not isinstance(page, list):
                    raise RuntimeError(f"generated client returned {type(page).__name__}")
                got = len(page)
                # Drop the page before the next request: kept alive across it, 100 records
                # survive into older generations and trigger full collections on every walk.
                del page
                seen += got
                if got < canned.PAGE_LIMIT:
                    return seen
                skip += got

        ops.retrieve, ops.create, ops.walk = retrieve, create, walk
        yield ops


def _finalpos_async_client_cls() -> Any:
    try:
        module = importlib.import_module("finalpos_async")
        cls = module.AsyncFinalPOS
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"not available yet: {type(exc).__name__}: {exc}") from exc
    return cls


@contextlib.asynccontextmanager
async def _finalpos_async_ops(url: str) -> AsyncIterator[AsyncOps]:
    cls = _finalpos_async_client_cls()
    client = cls(api_key=canned.API_KEY, base_url=url)
    try:
        customers = client.customers
    except AttributeError as exc:
        await _close_async(client)
        raise Unavailable(f"not available yet: {exc}") from exc
    try:
        ops = AsyncOps()

        async def retrieve(i: int) -> Any:
            return await customers.retrieve(canned.CUSTOMER_ID)

        async def create(i: int) -> Any:
            return await customers.create(**canned.create_fields(i))

        async def walk() -> int:
            seen = 0
            async for _customer in customers.list(limit=canned.PAGE_LIMIT):
                seen += 1
            return seen

        ops.retrieve, ops.create, ops.walk = retrieve, create, walk
        yield ops
    finally:
        await _close_async(client)


async def _close_async(client: Any) -> None:
    closer = getattr(client, "close", None) or getattr(client, "aclose", None)
    if closer is not None:
        result = closer()
        if asyncio.iscoroutine(result):
            await result


ASYNC_FACTORIES: dict[
    str, Callable[[str, str | None], contextlib.AbstractAsyncContextManager[AsyncOps]]
] = {
    "aiohttp-orjson": lambda url, peer: _aiohttp_ops(url, use_orjson=True),
    "aiohttp-json": lambda url, peer: _aiohttp_ops(url, use_orjson=False),
    "httpx-async": lambda url, peer: _httpx_ops(url),
    "generated-async": _peer_async_ops,
    "finalpos-async": lambda url, peer: _finalpos_async_ops(url),
    "finalpos-async-uvloop": lambda url, peer: _finalpos_async_ops(url),
    # Sequential in-loop variants: the same clients, one call at a time.
    "aiohttp-orjson-seq": lambda url, peer: _aiohttp_ops(url, use_orjson=True),
    "finalpos-async-seq": lambda url, peer: _finalpos_async_ops(url),
}
SEQUENTIAL_ASYNC = {"aiohttp-orjson-seq", "finalpos-async-seq"}


# --------------------------------------------------------------------------------------------
# Sync variants: context managers yielding an object with three plain functions.


class SyncOps:
    """The three operations of one blocking client; `walk` returns the number of records seen."""

    retrieve: Callable[[int], Any]
    create: Callable[[int], Any]
    walk: Callable[[], int]


@contextlib.contextmanager
def _requests_ops(url: str, peer_path: str | None) -> Iterator[SyncOps]:
    requests = _require("requests")
    one_url = url + canned.RETRIEVE_PATH.format(id=canned.CUSTOMER_ID)
    create_url = url + canned.CREATE_PATH
    list_url = url + canned.LIST_PATH
    with requests.Session() as session:
        session.headers["x-api-key"] = canned.API_KEY
        ops = SyncOps()

        def retrieve(i: int) -> Any:
            resp = session.get(one_url)
            resp.raise_for_status()
            return resp.json()

        def create(i: int) -> Any:
            resp = session.post(create_url, json=canned.create_body(i))
            resp.raise_for_status()
            return resp.json()

        def walk() -> int:
            skip, seen = 0, 0
            while True:
                resp = session.get(list_url, params={"skip": skip, "limit": canned.PAGE_LIMIT})
                resp.raise_for_status()
                page = resp.json()
                got = len(page)
                # Drop the page before the next request: kept alive across it, 100 records
                # survive into older generations and trigger full collections on every walk.
                del page
                seen += got
                if got < canned.PAGE_LIMIT:
                    return seen
                skip += got

        ops.retrieve, ops.create, ops.walk = retrieve, create, walk
        yield ops


@contextlib.contextmanager
def _peer_sync_ops(url: str, peer_path: str | None) -> Iterator[SyncOps]:
    mods = _peer_modules(peer_path)
    models = mods["models"]
    customer_cls = models.CustomerDto
    with _peer_client(mods, url) as client:
        ops = SyncOps()

        def retrieve(i: int) -> Any:
            result = mods["find_one"].sync(canned.CUSTOMER_ID, client=client)
            if not isinstance(result, customer_cls):
                raise RuntimeError(f"generated client returned {type(result).__name__}")
            return result

        def create(i: int) -> Any:
            result = mods["create"].sync(client=client, body=_peer_create_body(models, i))
            if not isinstance(result, customer_cls):
                raise RuntimeError(f"generated client returned {type(result).__name__}")
            return result

        def walk() -> int:
            skip, seen = 0, 0
            while True:
                page = mods["find_all"].sync(client=client, skip=skip, limit=canned.PAGE_LIMIT)
                if not isinstance(page, list):
                    raise RuntimeError(f"generated client returned {type(page).__name__}")
                got = len(page)
                # Drop the page before the next request: kept alive across it, 100 records
                # survive into older generations and trigger full collections on every walk.
                del page
                seen += got
                if got < canned.PAGE_LIMIT:
                    return seen
                skip += got

        ops.retrieve, ops.create, ops.walk = retrieve, create, walk
        yield ops


@contextlib.contextmanager
def _finalpos_sync_ops(url: str, peer_path: str | None) -> Iterator[SyncOps]:
    try:
        module = importlib.import_module("finalpos_sync")
        cls = module.FinalPOS
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"not available yet: {type(exc).__name__}: {exc}") from exc
    client = cls(api_key=canned.API_KEY, base_url=url)
    try:
        try:
            customers = client.customers
        except AttributeError as exc:
            raise Unavailable(f"not available yet: {exc}") from exc
        ops = SyncOps()

        def retrieve(i: int) -> Any:
            return customers.retrieve(canned.CUSTOMER_ID)

        def create(i: int) -> Any:
            return customers.create(**canned.create_fields(i))

        def walk() -> int:
            seen = 0
            for _customer in customers.list(limit=canned.PAGE_LIMIT):
                seen += 1
            return seen

        ops.retrieve, ops.create, ops.walk = retrieve, create, walk
        yield ops
    finally:
        client.close()


SYNC_FACTORIES: dict[
    str, Callable[[str, str | None], contextlib.AbstractContextManager[SyncOps]]
] = {
    "requests": _requests_ops,
    "generated-sync": _peer_sync_ops,
    "finalpos-sync": _finalpos_sync_ops,
}


# --------------------------------------------------------------------------------------------
# Measurement


def _cpu_seconds() -> float:
    """User + system CPU of this whole process (all threads), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


PROFILE_PATH: str | None = None
"""Where `--profile` dumps cProfile stats of the measured window (None: no profiling)."""


@contextlib.contextmanager
def _profiled() -> Iterator[None]:
    """Profile the measured window with cProfile when `--profile` was given.

    cProfile only sees the thread that enables it, so the sync facade's loop thread is invisible
    here: use the sampling profiler instead (`profile_cell.py --py-spy`).
    """
    if PROFILE_PATH is None:
        yield
        return
    import cProfile

    # CPU time of this thread, not wall time: on a shared machine a wall-clock profile charges
    # every preemption to whatever function happened to be running.
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(PROFILE_PATH)


class Measurement:
    """CPU and wall time of the measured window and the HTTP requests it made."""

    def __init__(self, cpu_s: float, wall_s: float, requests: int) -> None:
        self.cpu_s = cpu_s
        self.wall_s = wall_s
        self.requests = requests


async def _measure_async(
    ops: AsyncOps, operation: str, n: int, warmup: int, concurrency: int
) -> Measurement:
    """Warm up, then run `n` operations (walks for `list`) at `concurrency` and time them."""

    async def run(count: int) -> None:
        todo = iter(range(count))
        if operation == "list":

            async def worker() -> None:
                for _ in todo:
                    _check_walk(await ops.walk())

        else:
            call = ops.retrieve if operation == "retrieve" else ops.create

            async def worker() -> None:
                for i in todo:
                    _check_record(await call(i))

        await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))

    await run(warmup)
    gc.collect()
    with _profiled():
        cpu0, wall0 = _cpu_seconds(), time.perf_counter()
        await run(n)
        wall1, cpu1 = time.perf_counter(), _cpu_seconds()
    requests = n * canned.PAGES_PER_WALK if operation == "list" else n
    return Measurement(cpu1 - cpu0, wall1 - wall0, requests)


def _measure_sync(ops: SyncOps, operation: str, n: int, warmup: int) -> Measurement:
    """Warm up, then run `n` operations one after another and time them."""

    def run(count: int) -> None:
        if operation == "list":
            for _ in range(count):
                _check_walk(ops.walk())
        else:
            call = ops.retrieve if operation == "retrieve" else ops.create
            for i in range(count):
                _check_record(call(i))

    run(warmup)
    gc.collect()
    with _profiled():
        cpu0, wall0 = _cpu_seconds(), time.perf_counter()
        run(n)
        wall1, cpu1 = time.perf_counter(), _cpu_seconds()
    requests = n * canned.PAGES_PER_WALK if operation == "list" else n
    return Measurement(cpu1 - cpu0, wall1 - wall0, requests)


def _new_loop(variant: str) -> asyncio.AbstractEventLoop:
    if variant.endswith("-uvloop"):
        uvloop = _require("uvloop")
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    if variant == "finalpos-async-seq":
        # The sync facade's reference runs on the loop the facade itself uses (uvloop when it
        # is installed), so that the ratio measures the thread hop and nothing else.
        try:
            import uvloop
        except ImportError:
            return asyncio.new_event_loop()
        facade_loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return facade_loop
    return asyncio.new_event_loop()


def run_cell(
    variant: str, operation: str, url: str, n: int, warmup: int, peer: str | None
) -> Measurement:
    """Run one cell in this process and return its measurement (raises `Unavailable`)."""
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {OPERATIONS}, got {operation!r}")
    if variant in SYNC_FACTORIES:
        with SYNC_FACTORIES[variant](url, peer) as sync_ops:
            return _measure_sync(sync_ops, operation, n, warmup)
    if variant not in ASYNC_FACTORIES:
        raise ValueError(f"unknown variant {variant!r}")
    concurrency = 1 if variant in SEQUENTIAL_ASYNC else ASYNC_CONCURRENCY

    async def main() -> Measurement:
        async with ASYNC_FACTORIES[variant](url, peer) as async_ops:
            return await _measure_async(async_ops, operation, n, warmup, concurrency)

    loop = _new_loop(variant)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main() -> None:
    """Command-line entry: run the cells given and print one JSON result line per operation.

    Several operations (`retrieve,create,list` with matching `--n 600,600,8`) run one after
    another in this interpreter, each with a fresh client; `run.py --quick` uses that to pay
    the interpreter start-up once per variant instead of once per cell.
    """
    parser = argparse.ArgumentParser(description="Run benchmark cells of one variant.")
    parser.add_argument("variant")
    parser.add_argument("operations", help="comma-separated: retrieve, create, list")
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", required=True, help="operations per cell (walks for list)")
    parser.add_argument("--warmup", default="0", help="warm-up operations per cell")
    parser.add_argument("--peer", default=None, help="folder holding the generated peer client")
    parser.add_argument("--profile", default=None, help="dump cProfile stats of the window here")
    args = parser.parse_args()
    global PROFILE_PATH
    PROFILE_PATH = args.profile
    operations = args.operations.split(",")
    counts, warmups = _int_list(args.n), _int_list(args.warmup)
    if len(warmups) == 1:
        warmups *= len(operations)
    if len(counts) != len(operations) or len(warmups) != len(operations):
        parser.error("--n and --warmup need one value per operation")
    for operation, n, warmup in zip(operations, counts, warmups, strict=True):
        try:
            m = run_cell(args.variant, operation, args.url, n, warmup, args.peer)
        except Unavailable as exc:
            result = {"operation": operation, "status": "unavailable", "reason": str(exc)}
        else:
            result = {
                "operation": operation,
                "status": "ok",
                "cpu_s": m.cpu_s,
                "wall_s": m.wall_s,
                "requests": m.requests,
                "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
