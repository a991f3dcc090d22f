"""JSON encoding and decoding in one place: orjson when importable, the stdlib otherwise."""

from __future__ import annotations

import json as _json
import math
from collections.abc import Callable
from typing import Any, Final, cast

__all__ = ["BACKEND", "dumps", "dumps_decoded", "loads"]

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only without the `speedups` extra
    _orjson = None  # type: ignore[assignment]  # orjson is optional


def _stdlib_dumps(obj: Any) -> bytes:
    # Compact separators and real UTF-8, so both back ends put the same bytes on the wire.
    return _json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def _stdlib_loads(data: bytes | str) -> Any:
    try:
        return _json.loads(data)
    except RecursionError:
        # Deeply nested input: report it like any other undecodable body (orjson does too).
        raise ValueError("JSON nested too deeply to decode") from None


def _non_finite_path(obj: Any, path: str = "$") -> str | None:
    """Where `obj` holds a NaN or infinite float (`$.items[2].price`), or `None`."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else path
    if isinstance(obj, dict):
        for key, value in cast("dict[object, object]", obj).items():
            found = _non_finite_path(value, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(cast("list[object] | tuple[object, ...]", obj)):
            found = _non_finite_path(value, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _refuse_non_finite(obj: Any) -> None:
    where = _non_finite_path(obj)
    if where is not None:
        raise ValueError(
            f"cannot encode a NaN or infinite number as JSON (at {where}); "
            "JSON has no such value and the amount would be lost"
        )


BACKEND: Final = "orjson" if _orjson is not None else "json"

if _orjson is not None:
    # Bound once: the functions below run on every request and response.
    _orjson_dumps = _orjson.dumps
    _orjson_loads = _orjson.loads

    def dumps(obj: Any) -> bytes:
        """Encode `obj` as compact UTF-8 JSON bytes; NaN/infinity raise `ValueError`."""
        out = _orjson_dumps(obj)
        # orjson writes NaN and infinity as `null`, silently losing the value: look for them,
        # but only when a `null` is in the output (rare in request bodies, so almost free).
        if b"null" in out:
            _refuse_non_finite(obj)
        return out

    def loads(data: bytes | str) -> Any:
        """Decode JSON from `bytes` or `str`."""
        return _orjson_loads(data)

else:  # pragma: no cover - exercised only without the `speedups` extra

    def dumps(obj: Any) -> bytes:
        """Encode `obj` as compact UTF-8 JSON bytes; NaN/infinity raise `ValueError`."""
        try:
            return _stdlib_dumps(obj)
        except ValueError:
            _refuse_non_finite(obj)
            raise

    def loads(data: bytes | str) -> Any:
        """Decode JSON from `bytes` or `str`."""
        return _stdlib_loads(data)


dumps_decoded: Final[Callable[[Any], bytes]] = _orjson.dumps if _orjson is not None else dumps
"""`dumps` for a value `loads` decoded (a record written back as it came, by `finalpos export`):
orjson refuses NaN and infinity when decoding, so there is none to look for in what it decoded;
with the stdlib back end, which decodes them, this is `dumps` and refuses them."""
