"""Fixtures of the CLI tests: a sandbox server in a thread of the test process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from finalpos_async.sandbox import Sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """An in-memory sandbox on 127.0.0.1 (a free port), stopped after the test."""
    with Sandbox().run_in_thread() as sb:
        yield sb
