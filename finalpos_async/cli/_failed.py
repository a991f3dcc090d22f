"""The failed-rows file: every row that is not known to be in the target, with why.

Each line is `{"line", "outcome", "error", "identity", "idempotencyKey", "row", ...}`; the first
line is the job's header (`_input.Header`). The file is importable: `_input.Input` reads it back.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from .._exceptions import (
    APIConnectionError,
    AuthenticationError,
    PermissionDeniedError,
    RateLimitError,
    RateLimiterUnavailable,
)
from ..bulk import ItemResult, ItemStatus
from ._input import Header, Row

__all__ = ["FailedRows", "outcome_of", "write_result"]


class FailedRows:
    """The failed-rows file: written beside the final path, moved into place when complete.

    Until then the previous file (possibly the one being imported) stays untouched, so a crash
    loses nothing; a run with no failures removes the old one, since its rows are all done.
    `keep=False` (--validate-only) counts the rows and writes nothing, not even a temporary file.
    """

    def __init__(self, path: Path, *, keep: bool = True) -> None:
        self.path = path
        self.keep = keep
        self.count = 0
        self.nearly = 0  # unknown rows that a record in the target only nearly matches
        self.outcomes: collections.Counter[str] = collections.Counter()
        self._stream: IO[str] | None = None
        self._tmp: str | None = None

    def write(self, source: Row, outcome: str, error: str, **extra: Any) -> None:
        """Add one row: its outcome, its error, and `extra` fields (None ones left out)."""
        self.count += 1
        self.outcomes[outcome] += 1
        if not self.keep:
            return
        if self._stream is None:
            self._stream = self._open_tmp()
        record: dict[str, Any] = {"line": source.line, "outcome": outcome, "error": error}
        if outcome == ItemStatus.UNKNOWN.value:
            record["exists"] = None  # for the user to answer: true (in the target) or false
        record.update({k: v for k, v in extra.items() if v is not None})
        self._stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")

    def commit(self, header: Header) -> None:
        """Put the file in place, with its header.

        When nothing failed, no file is made; one left by an earlier run is not removed but
        emptied down to its header, so its printed instruction stays safe to follow again
        (importing it then says that every row is in the target).
        """
        if not self.keep:
            return
        if self._stream is None:
            if not self.path.exists():
                return
            self._stream = self._open_tmp()
        self._stream.close()
        self._stream = None
        assert self._tmp is not None
        final_fd, final_tmp = tempfile.mkstemp(
            prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent
        )
        with (
            os.fdopen(final_fd, "w", encoding="utf-8") as out,
            open(self._tmp, encoding="utf-8") as body,
        ):
            out.write(json.dumps(header.to_json(), ensure_ascii=False) + "\n")
            for text in body:
                out.write(text)
        os.replace(final_tmp, self.path)
        os.unlink(self._tmp)
        self._tmp = None

    def _open_tmp(self) -> IO[str]:
        fd, self._tmp = tempfile.mkstemp(
            prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent
        )
        return os.fdopen(fd, "w", encoding="utf-8")

    def discard(self) -> None:
        """Drop what was written (the run was refused before sending anything)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None


def outcome_of(result: ItemResult[Any]) -> str:
    """How the failed-rows file marks a row: `failed` only when the row itself needs a fix."""
    error = result.error
    if result.status is ItemStatus.CANCELLED or (
        result.status is ItemStatus.FAILED
        and (
            isinstance(error, (AuthenticationError, PermissionDeniedError, RateLimitError))
            or (
                isinstance(error, (APIConnectionError, RateLimiterUnavailable))
                and not error.maybe_processed
            )
        )
    ):
        return "not sent"  # nothing wrong with the row: the credentials, target or limiter were
    return str(result.status.value)


def write_result(failed: FailedRows, result: ItemResult[Any]) -> None:
    """Add the row of a result that is not ok (its item is a bulk item of `_import`)."""
    item = result.item
    row: Row = item["row"]
    if result.status is ItemStatus.UNKNOWN and "nearly matches" in result.reason:
        failed.nearly += 1
    failed.write(
        row,
        outcome_of(result),
        result.reason,
        identity=result.key,
        idempotencyKey=result.idempotency_key or None,
        row=row.data if isinstance(row.data, Mapping) else item["body"],
    )
