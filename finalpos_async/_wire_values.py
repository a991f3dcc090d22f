"""Leaf values between JSON and Python: each takes a value and returns it converted, or raises
`FieldError` (with an empty path; the caller adds the field's name).

- `datetime` values are timezone-aware (a naive timestamp from the server is taken as UTC) and
  written with milliseconds;
- `Decimal` values are decimal strings on the wire and go back as the same string, never via
  float (written in fixed-point notation, as the spec's money pattern asks: `1E+3` goes as `1000`);
- numbers (the spec's `number`) keep integral values as `int`.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from ._field_error import FieldError

__all__ = [
    "check_any",
    "check_bool",
    "check_number",
    "check_object",
    "check_str",
    "check_str_list",
    "dump_datetime",
    "dump_decimal",
    "list_of",
    "parse_datetime",
    "parse_decimal",
]


def parse_datetime(value: Any) -> datetime:
    if value.__class__ is not str:
        raise FieldError("a date-time string", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        # Python 3.10's fromisoformat does not take a trailing "Z".
        if value[-1:] not in ("Z", "z"):
            raise FieldError("a date-time string", value) from None
        try:
            parsed = datetime.fromisoformat(value[:-1] + "+00:00")
        except ValueError:
            raise FieldError("a date-time string", value) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def dump_datetime(value: Any) -> str:
    if not isinstance(value, datetime):
        raise FieldError("a datetime", value)
    if value.tzinfo is None:
        raise FieldError("a timezone-aware datetime", value)
    # Milliseconds, as the API writes them, unless the value carries finer precision.
    spec = "microseconds" if value.microsecond % 1000 else "milliseconds"
    return value.isoformat(timespec=spec)


def parse_decimal(value: Any) -> Decimal:
    cls = value.__class__
    if cls is str:
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise FieldError("a decimal string", value) from None
    elif cls is int or cls is float:
        # Tolerated: a server sending a JSON number for money; repr keeps what it sent.
        result = Decimal(repr(value))
    else:
        raise FieldError("a decimal string", value)
    if not result.is_finite():
        raise FieldError("a finite decimal", value)
    return result


def dump_decimal(value: Any) -> str:
    # Fixed-point ("1000", never "1E+3"): the spec's money pattern allows no exponent.
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise FieldError("a finite Decimal", value)
        return f"{value:f}"
    if isinstance(value, str):
        return f"{parse_decimal(value):f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    # A float would already have lost digits; refuse it rather than send a rounded amount.
    raise FieldError("a Decimal or a decimal string", value)


def check_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise FieldError("string", value)


def check_bool(value: Any) -> bool:
    if value is True or value is False:
        return bool(value)
    raise FieldError("boolean", value)


def check_number(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise FieldError("a finite number", value)
        return value
    raise FieldError("number", value)


def check_object(value: Any) -> dict[str, Any]:
    if value.__class__ is dict:
        return typing.cast("dict[str, Any]", value)
    if isinstance(value, Mapping):
        return dict(typing.cast("Mapping[str, Any]", value))
    raise FieldError("object", value)


def check_any(value: Any) -> Any:
    return value


def check_str_list(value: Any) -> list[str]:
    """A list of strings, kept as the same list object (no copy) when it is one."""
    if value.__class__ is not list:
        raise FieldError("array", value)
    for index, item in enumerate(value):
        if item.__class__ is not str:
            raise FieldError("string", item, (index,))
    checked: list[str] = value  # a typed name, not `typing.cast`: no call per record
    return checked


def _is_non_text_sequence(value: object) -> bool:
    # A plain bool, not a type guard: `convert` below keeps `value` as `Any` (iterating it as a
    # narrowed `Sequence[Unknown]` would need a cast per call on the hot path).
    return not isinstance(value, (str, bytes)) and isinstance(value, Sequence)


def list_of(item: Callable[[Any], Any], *, dumping: bool) -> Callable[[Any], list[Any]]:
    def convert(value: Any) -> list[Any]:
        if value.__class__ is not list and (not dumping or not _is_non_text_sequence(value)):
            raise FieldError("array", value)
        try:
            return [item(x) for x in value]
        except FieldError:
            pass
        # Slow path, only to name the failing index.
        for index, x in enumerate(value):
            try:
                item(x)
            except FieldError as error:
                raise error.within(index) from None
        raise AssertionError("unreachable")  # pragma: no cover

    return convert
