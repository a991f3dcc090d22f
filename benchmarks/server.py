"""The benchmark's local API server, always in a process of its own.

Two implementations answer the same three routes from canned bytes (see `canned.py`):

- **nginx**, when an `nginx` binary is on PATH (or given with `--nginx`): static files and a
  `return` directive, one worker process; the cheapest server we can get, so the server is never
  what limits the client;
- **aiohttp.web** otherwise (nothing to install, so CI and a fresh machine can run the
  benchmark): a minimal app under uvloop when available, no access log, every body encoded once.

Routes: `GET /v1/api/customer/{id}` (one record), `POST /v1/api/customer` (201, one record),
`GET /v1/api/customers?skip=&limit=` (a page of the 950-record collection).

Run on its own: `python benchmarks/server.py` prints `LISTENING http://127.0.0.1:PORT` and serves
until its standard input closes, so it never outlives the benchmark that started it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import canned
from _sandbox_process import stop_process

READY_PREFIX = "LISTENING "
START_TIMEOUT = 20.0
"""Seconds a server gets to start listening; generous because the machine is shared."""


# --------------------------------------------------------------------------------------------
# aiohttp.web implementation (runs in the child process)


def _page_cache() -> dict[tuple[int, int], bytes]:
    """Encode every page a `limit=100` walk asks for, once, before serving."""
    pages: dict[tuple[int, int], bytes] = {}
    for skip in range(0, canned.LIST_TOTAL + canned.PAGE_LIMIT, canned.PAGE_LIMIT):
        key = (skip, canned.PAGE_LIMIT)
        pages[key] = canned.encode(canned.page_records(*key))
    return pages


def _int_param(raw: str | None, default: int) -> int:
    """Parse `skip`/`limit`; the generated peer client sends numbers as floats (`100.0`)."""
    if raw is None or raw == "":
        return default
    return int(float(raw))


def _make_app() -> object:
    """Build the aiohttp.web application (imported lazily: the nginx path needs no aiohttp)."""
    from aiohttp import web

    single = canned.SINGLE_BODY
    pages = _page_cache()
    json_type = "application/json"

    async def retrieve(request: web.Request) -> web.Response:
        return web.Response(body=single, content_type=json_type)

    async def create(request: web.Request) -> web.Response:
        # Read the body like a real server would; its size is the client's business.
        await request.read()
        return web.Response(status=201, body=single, content_type=json_type)

    async def list_page(request: web.Request) -> web.Response:
        query = request.query
        try:
            skip = _int_param(query.get("skip"), 0)
            limit = _int_param(query.get("limit"), canned.PAGE_LIMIT)
        except ValueError:
            return web.Response(status=400, body=b'{"statusCode":400,"message":"bad skip/limit"}')
        body = pages.get((skip, limit))
        if body is None:
            body = pages[(skip, limit)] = canned.encode(canned.page_records(skip, limit))
        return web.Response(body=body, content_type=json_type)

    app = web.Application()
    app.router.add_get("/v1/api/customer/{id}", retrieve)
    app.router.add_post("/v1/api/customer", create)
    app.router.add_get("/v1/api/customers", list_page)

    async def empty_page(request: web.Request) -> web.Response:
        return web.Response(body=b"[]", content_type=json_type)

    app.router.add_post(canned.EMPTY_TARGET + "/v1/api/customer", create)
    app.router.add_get(canned.EMPTY_TARGET + "/v1/api/customers", empty_page)
    return app


async def _serve_aiohttp(port: int, stop: asyncio.Event) -> None:
    """Serve until `stop` is set, announcing the bound URL on stdout."""
    from aiohttp import web

    app = _make_app()
    assert isinstance(app, web.Application)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    # A deep backlog: 64 clients connect at once at the start of every async variant.
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"{READY_PREFIX}http://127.0.0.1:{bound}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _run_child(port: int) -> None:
    """Entry point of the server process: serve until stdin closes or SIGTERM arrives."""
    new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        new_loop = uvloop.new_event_loop
    except ImportError:  # uvloop is an optional speed-up; the server works without it.
        pass
    loop = new_loop()
    asyncio.set_event_loop(loop)
    stop = asyncio.Event()

    def watch_stdin() -> None:
        # The parent holds our stdin; EOF means it is gone (or done), so we stop with it.
        with contextlib.suppress(Exception):
            sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        loop.run_until_complete(_serve_aiohttp(port, stop))
    finally:
        loop.close()


# --------------------------------------------------------------------------------------------
# nginx implementation


def _free_port() -> int:
    """Return a port that was free a moment ago (nginx cannot report a port-0 bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_nginx_site(root: Path, port: int) -> Path:
    """Write the canned files and an nginx.conf serving them on 127.0.0.1:`port`; return it."""
    pages = root / "pages"
    pages.mkdir(parents=True, exist_ok=True)
    for skip in range(0, canned.LIST_TOTAL, canned.PAGE_LIMIT):
        body = canned.encode(canned.page_records(skip, canned.PAGE_LIMIT))
        (pages / f"{skip}.json").write_bytes(body)
    (pages / "empty.json").write_bytes(b"[]")
    (root / "one.json").write_bytes(canned.SINGLE_BODY)
    single = canned.SINGLE_BODY.decode()
    if any(ch in single for ch in "'\\$"):
        raise ValueError("canned record contains a character nginx would interpret")
    # nginx worker processes run as `nobody` when the master is root: let them read the files.
    for path in [root, pages, *pages.iterdir(), root / "one.json"]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    conf = root / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    default_type application/json;
    # skip arrives as "100" from most clients and as "100.0" from the generated peer client.
    map $arg_skip $bench_page {{
        "~^(?<n>[0-9]+)(\\.0+)?$" $n;
        default none;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        root {root};
        location = /v1/api/customer {{
            return 201 '{single}';
        }}
        location ~ ^/v1/api/customer/[^/]+$ {{
            try_files /one.json =404;
        }}
        location = /v1/api/customers {{
            try_files /pages/$bench_page.json /pages/empty.json;
        }}
        # An empty collection for the import cells: a fresh journal against a target that
        # holds records looks every row up first, which is not the cost being compared.
        location = {canned.EMPTY_TARGET}/v1/api/customer {{
            return 201 '{single}';
        }}
        location = {canned.EMPTY_TARGET}/v1/api/customers {{
            try_files /pages/empty.json =404;
        }}
        location /pages/ {{
            internal;
        }}
    }}
}}
"""
    )
    return conf


def _wait_listening(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Poll until something accepts connections on `port`, or fail with the server's stderr."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode} before listening")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # polling a port with a deadline; nginx offers no readiness signal
    raise RuntimeError(f"nginx did not listen on port {port} within {START_TIMEOUT} s")


class ServerInfo:
    """A running benchmark server: its base URL and a human-readable description."""

    def __init__(self, url: str, kind: str) -> None:
        self.url = url
        self.kind = kind


@contextlib.contextmanager
def run_server(kind: str = "auto", nginx: str | None = None) -> Iterator[ServerInfo]:
    """Start the benchmark server in its own process and stop it on exit.

    `kind` is `auto` (nginx when found, else aiohttp), `nginx` or `aiohttp`.
    """
    nginx_bin = nginx or shutil.which("nginx")
    if kind == "nginx" and not nginx_bin:
        raise RuntimeError("--server nginx was asked for but no nginx binary is on PATH")
    if kind in ("auto", "nginx") and nginx_bin:
        try:
            nginx_cm = _run_nginx(nginx_bin)
            info = nginx_cm.__enter__()
        except RuntimeError as exc:
            if kind == "nginx":
                raise
            # An nginx that cannot start here (permissions, a broken install) is not fatal:
            # the aiohttp fallback serves the same bytes.
            print(f"nginx did not start ({exc}); using the aiohttp.web server", file=sys.stderr)
        else:
            try:
                yield info
            finally:
                nginx_cm.__exit__(None, None, None)
            return
    with _run_aiohttp() as info:
        yield info


@contextlib.contextmanager
def _run_nginx(nginx_bin: str) -> Iterator[ServerInfo]:
    root = Path(tempfile.mkdtemp(prefix="finalpos-bench-nginx-"))
    port = _free_port()
    conf = write_nginx_site(root, port)
    version = subprocess.run(
        [nginx_bin, "-v"], capture_output=True, text=True, check=False
    ).stderr.strip()
    proc = subprocess.Popen(
        [nginx_bin, "-p", str(root), "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        try:
            _wait_listening(port, proc, time.monotonic() + START_TIMEOUT)
        except RuntimeError as exc:
            exited = proc.poll() is not None and proc.stderr is not None
            err = proc.stderr.read().decode(errors="replace") if exited and proc.stderr else ""
            raise RuntimeError(f"{exc}: {err.strip()[-300:]}") from None
        yield ServerInfo(f"http://127.0.0.1:{port}", f"{version} (1 worker)")
    finally:
        stop_process(proc)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _run_aiohttp() -> Iterator[ServerInfo]:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--port", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        line = _read_ready_line(proc)
        try:
            import uvloop  # noqa: F401

            loop = "uvloop"
        except ImportError:
            loop = "asyncio"
        yield ServerInfo(line, f"aiohttp.web (separate process, {loop})")
    finally:
        proc.stdin.close()  # the server stops when its stdin closes
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def _read_ready_line(proc: subprocess.Popen[str]) -> str:
    """Read the server's `LISTENING url` line within the start timeout."""
    assert proc.stdout is not None
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(START_TIMEOUT)
    if not result or not result[0].startswith(READY_PREFIX):
        proc.kill()
        raise RuntimeError(f"benchmark server did not start: {result[0] if result else 'timeout'}")
    return result[0][len(READY_PREFIX) :].strip()


def main() -> None:
    """Run the aiohttp.web server in this process (what the parent starts)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    _run_child(args.port)


if __name__ == "__main__":
    main()
