"""The Celery app that tests/e2e/test_celery_*.py's worker processes run (`celery -A celery_app
worker`): its broker from FINALPOS_TEST_BROKER. Each HTTP attempt's start (`time.time()`, taken
right after the shared cap granted it) is appended to `sent.log` in the worker's directory, so
the test counts what the workers sent, apart from when the sandbox got to it."""

from __future__ import annotations

import os
import time

from celery import Celery

from finalpos_async import CallNext, Request, TransportResponse
from finalpos_async.celery import use_middleware


async def stamp(request: Request, call_next: CallNext) -> TransportResponse:
    with open("sent.log", "a") as log:  # noqa: ASYNC230 - a line per attempt, in a test
        log.write(f"{time.time()}\n")
    return await call_next(request)


use_middleware([stamp])
app = Celery("finalpos-tests", broker=os.environ["FINALPOS_TEST_BROKER"])
app.conf.update(
    worker_prefetch_multiplier=1,  # a worker holds only the task it runs
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
