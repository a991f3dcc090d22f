"""Request arguments -> the JSON body: `unstructure_params`, which generated methods call.

Arguments are checked as they are written: a nested model may also be given as a plain mapping
(Python or wire names), a date-time as an ISO 8601 string; `NOT_GIVEN` is left out and `None`
sent as null where the field is optional. Errors are `TypeError`/`ValueError` (`FieldError`)
naming the argument.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import attrs

from ._field_error import FieldError, MissingFieldError
from ._model_hooks import converter, is_model, leaf_for, model_fields
from ._types import NotGiven
from ._wire_values import dump_datetime, list_of, parse_datetime

__all__ = ["unstructure_params"]


@attrs.frozen
class _ParamField:
    wire: str
    optional: bool
    dump: Callable[[Any], Any]
    # A value of exactly this class is written as it is, without calling `dump` (str, bool).
    exact: type | None


@attrs.frozen
class _ParamTable:
    """How to check and write each field of a request model, by Python name and by wire name."""

    by_name: dict[str, _ParamField]
    by_key: dict[str, _ParamField]
    required: tuple[str, ...]


_PARAM_TABLES: dict[type, _ParamTable] = {}


def _param_table(cls: type) -> _ParamTable:
    table = _PARAM_TABLES.get(cls)
    if table is None:
        by_name = {
            field.name: _ParamField(
                wire, optional, _param_dumper(tp), tp if tp in (str, bool) else None
            )
            for field, wire, tp, optional in model_fields(cls)
        }
        by_key = {**by_name, **{spec.wire: spec for spec in by_name.values()}}
        required = tuple(spec.wire for spec in by_name.values() if not spec.optional)
        table = _PARAM_TABLES[cls] = _ParamTable(by_name, by_key, required)
    return table


def _param_dumper(tp: Any) -> Callable[[Any], Any]:
    """Like the leaf dumper, but a nested model may also be given as a plain mapping, and a
    date-time as an ISO 8601 string."""
    if is_model(tp):
        model = tp

        def dump(value: Any) -> Any:
            if isinstance(value, model):
                return converter.get_unstructure_hook(model)(value)
            if isinstance(value, Mapping):
                return _dump_mapping(model, typing.cast("Mapping[str, Any]", value))
            raise FieldError(f"{model.__name__} or a mapping", value)

        return dump
    if typing.get_origin(tp) is list:
        (item_tp,) = typing.get_args(tp)
        return list_of(_param_dumper(item_tp), dumping=True)
    if tp is datetime:
        return lambda v: dump_datetime(parse_datetime(v) if isinstance(v, str) else v)
    return leaf_for(tp).dump


def _dump_mapping(model: type, value: Mapping[str, Any]) -> dict[str, Any]:
    """A nested argument given as a mapping, checked and written in one pass.

    Keys may be Python names (`first_name`) or wire names (`firstName`); keys the model does not
    know pass through as they are (the API may know fields the spec does not); `None` is null.
    """
    table = _param_table(model)
    out: dict[str, Any] = {}
    for key, item in value.items():
        spec = table.by_key.get(key)
        if spec is None:
            if not isinstance(key, str):
                raise FieldError("string keys", key)
            out[key] = item
        elif item is None:
            if not spec.optional:
                raise FieldError("a value (None is not allowed)", None, (spec.wire,))
            out[spec.wire] = None
        elif item.__class__ is spec.exact:
            out[spec.wire] = item
        else:
            try:
                out[spec.wire] = spec.dump(item)
            except FieldError as error:
                raise error.within(spec.wire) from None
    for wire in table.required:
        if wire not in out:
            raise MissingFieldError((wire,))
    return out


def unstructure_params(
    cls: type, values: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON body for `cls` from keyword arguments (Python names), checking every value.

    `NOT_GIVEN` values are left out; `None` is sent as null where the field is optional; `extra`
    (the caller's `extra_body`) is added last and may hold fields the spec does not know.
    Raises `TypeError`/`ValueError` naming the argument.
    """
    table = _param_table(cls).by_name
    body: dict[str, Any] = {}
    for name, value in values.items():
        if value.__class__ is NotGiven:
            continue
        spec = table[name]
        if value is None:
            if not spec.optional:
                raise FieldError("a value (None is not allowed)", None, (name,))
            body[spec.wire] = None
            continue
        if value.__class__ is spec.exact:
            body[spec.wire] = value
            continue
        try:
            body[spec.wire] = spec.dump(value)
        except FieldError as error:
            raise error.within(name) from None
    if extra:
        if not isinstance(extra, Mapping):
            # Named here: `dict.update` would say only "'float' object is not iterable".
            raise TypeError(
                f"extra_body must be a mapping of field names to values, got {type(extra).__name__}"
            )
        body.update(extra)
    return body
