"""The Celery app that tests/e2e/test_celery_workers.py's worker processes run (`celery -A
celery_app worker`) and that the test enqueues through: its broker from FINALPOS_TEST_BROKER."""

from __future__ import annotations

import os

from celery import Celery

import finalpos_async.celery  # noqa: F401 - registers the finalpos import task

app = Celery("finalpos-tests", broker=os.environ["FINALPOS_TEST_BROKER"])
app.conf.update(
    worker_prefetch_multiplier=1,  # a worker holds only the task it runs
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
