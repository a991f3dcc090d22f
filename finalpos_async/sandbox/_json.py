"""JSON encoding for the sandbox: orjson when importable, the standard library otherwise.

The sandbox keeps its own two functions (instead of importing the client's codec) so that the
server never depends on client internals: it must be able to answer a broken client.
"""

from __future__ import annotations

import json
from typing import Any

try:  # orjson is an optional speed-up (the `speedups` extra).
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment]  # orjson is optional: None means not installed

__all__ = ["dumps", "loads"]


def dumps(obj: Any) -> bytes:
    """Encode `obj` as compact UTF-8 JSON bytes."""
    if _orjson is not None:
        return _orjson.dumps(obj)
    # ASCII escapes: a lone surrogate from a lenient decode must not fail the encode
    return json.dumps(obj, separators=(",", ":")).encode()


def loads(data: bytes | str) -> Any:
    """Decode JSON; raises `ValueError` (orjson's error is a subclass) on malformed input."""
    if _orjson is not None:
        return _orjson.loads(data)
    return json.loads(data)
