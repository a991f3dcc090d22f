"""Celery worker processes for the e2e tests (`tests/e2e/test_celery_*.py`): a `Pool` of them,
each in a new, empty directory, running `tests/e2e/celery_app.py`; the environment they get; and
what the job's chunks say in the PostgreSQL journal."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
from sandbox_proc import ROOT

__all__ = ["Pool", "chunks", "done", "environment", "pool"]

HERE = Path(__file__).parent / "e2e"
# One process per worker (solo pool: a SIGKILL ends the worker and its task at once).
CELERY_WORKER = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "-P", "solo"]
CELERY_WORKER += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]


class Pool:
    """Celery worker processes, each in a directory of its own; all killed at the end."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.started: list[subprocess.Popen[bytes]] = []
        self.by_name: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        home = self.root / name
        home.mkdir(parents=True)  # new and empty: nothing of an earlier worker
        log = (home / "worker.log").open("wb")
        worker = subprocess.Popen(
            [*CELERY_WORKER, "-n", f"{name}@%h"],
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        self.started.append(worker)
        self.by_name[name] = worker
        return worker

    async def ready(self, name: str) -> None:
        deadline = time.monotonic() + 60
        log = self.root / name / "worker.log"
        while b" ready." not in log.read_bytes():
            assert time.monotonic() < deadline, log.read_text()
            assert self.by_name[name].poll() is None, log.read_text()  # it did not start
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        for worker in self.started:
            if worker.poll() is None:
                worker.kill()
            worker.wait()


@asynccontextmanager
async def pool(root: Path, env: dict[str, str]) -> AsyncIterator[Pool]:
    workers = Pool(root, env)
    try:
        yield workers
    finally:
        workers.stop()


def chunks(url: str, file: Path) -> list[tuple[str, int]]:
    """(state, claims) of each chunk of the job of `file` (none before a worker published it)."""
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('finalpos_work_chunks')").fetchone() == (None,):
            return []
        rows = conn.execute(
            "SELECT c.state, c.claims FROM finalpos_work_chunks c JOIN finalpos_work_jobs j "
            "ON j.work_id = c.work_id WHERE j.description->>'file' = %s ORDER BY c.chunk",
            (str(file),),
        )
        return [(state, claims) for state, claims in rows]


async def done(url: str, file: Path, deadline: float) -> list[tuple[str, int]]:
    """Wait until every chunk of the job of `file` is done; its chunks."""
    while True:
        states = chunks(url, file)
        if states and all(state == "done" for state, _ in states):
            return states
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.2)


def environment(broker: str, journal: str, redis: str, keys: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
        "FINALPOS_TEST_BROKER": broker,
        "FINALPOS_JOURNAL": journal,
        "FINALPOS_REDIS_URL": redis,
        **keys,
    }
