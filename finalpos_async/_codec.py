"""JSON encoding and decoding in one place: orjson when importable, the stdlib otherwise."""

from __future__ import annotations

import json as _json
from typing import Any

__all__ = ["BACKEND", "dumps", "loads"]

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only without the `speedups` extra
    _orjson = None  # type: ignore[assignment]


def _stdlib_dumps(obj: Any) -> bytes:
    # Compact separators and real UTF-8, so both back ends put the same bytes on the wire.
    return _json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def _stdlib_loads(data: bytes | str) -> Any:
    return _json.loads(data)


if _orjson is not None:
    BACKEND = "orjson"

    def dumps(obj: Any) -> bytes:
        """Encode `obj` as compact UTF-8 JSON bytes."""
        return _orjson.dumps(obj)

    def loads(data: bytes | str) -> Any:
        """Decode JSON from `bytes` or `str`."""
        return _orjson.loads(data)

else:  # pragma: no cover - exercised only without the `speedups` extra
    BACKEND = "json"

    def dumps(obj: Any) -> bytes:
        """Encode `obj` as compact UTF-8 JSON bytes."""
        return _stdlib_dumps(obj)

    def loads(data: bytes | str) -> Any:
        """Decode JSON from `bytes` or `str`."""
        return _stdlib_loads(data)
