"""The request log (`request_log=` / `--request-log FILE`): one JSON line per request served.

For tests that watch a sandbox from outside its process: each line says when the request arrived
(``t``, seconds since the epoch, when the rate limit counted it), whose key it carried (``key``:
the key's fingerprint, the client's `credentials_fingerprint`, never the key; null without one),
``method``, ``path`` and the answer's ``status`` (0: none was sent, the connection was reset),
for example::

    {"t":1765103700.123456,"key":"3f1c0a9e5b7d2c44","method":"POST","path":"/v1/api/customer","status":201}

From those a test computes the busiest second per key or counts the 429s. Each line is written
whole and handed to the operating system as it is written (line buffering), so a reader sees a
request's line once its answer was sent; the file is appended to, never truncated.
"""

from __future__ import annotations

import os

from . import _json

__all__ = ["RequestLog"]


class RequestLog:
    """An open request log file; `write` one line per request, `close` when the server stops."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        # line buffering: each line reaches the file (one write call) as soon as it is complete
        self._file = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def write(
        self, *, at: float, fingerprint: str | None, method: str, path: str, status: int
    ) -> None:
        """Append one request's line."""
        line = {"t": at, "key": fingerprint, "method": method, "path": path, "status": status}
        self._file.write(_json.dumps(line).decode() + "\n")

    def close(self) -> None:
        """Close the file (safe to call twice)."""
        self._file.close()
