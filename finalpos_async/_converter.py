"""The one cattrs `Converter` of the package: wire JSON <-> the generated attrs models.

This module is where generated code and the client import the conversion API from; the work is
split by job:

- `_model_hooks`: the converter and the per-class structure/unstructure hooks it compiles
  (wire names, unknown keys kept in `extra`, `None` left out on unstructure);
- `_wire_values`: leaf values (timezone-aware `datetime`, `Decimal` as decimal strings,
  numbers, strings, lists);
- `_field_error`: `FieldError`, naming the path of a value of the wrong shape (`billing.firstName`,
  `[3].totalSpent`) and the received type; callers turn it into `ResponseValidationError` (for a
  response body) or leave it as the `TypeError`/`ValueError` it is (for a request argument);
- `_params`: request arguments -> the JSON body (`unstructure_params`).

Unstructure also checks types, so a model built by hand with a wrong value fails before any
request.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any, TypeVar

from ._field_error import FieldError, MissingFieldError
from ._model_hooks import converter, is_model, wire_name
from ._params import unstructure_params

__all__ = [
    "FieldError",
    "MissingFieldError",
    "converter",
    "is_model",
    "structure",
    "structure_list",
    "unstructure",
    "unstructure_params",
    "wire_name",
]

_T = TypeVar("_T")


# cls -> its structure hook: a dict lookup instead of cattrs' dispatch (about 0.5 µs) per call.
_STRUCTURE_HOOKS: dict[Any, Callable[[Any, Any], Any]] = {}


def structure(data: Any, cls: type[_T]) -> _T:
    """Build a `cls` model from decoded JSON; raises `FieldError` naming the bad field."""
    hook = _STRUCTURE_HOOKS.get(cls)
    if hook is None:
        hook = _STRUCTURE_HOOKS[cls] = converter.get_structure_hook(cls)
    return typing.cast("_T", hook(data, cls))


def structure_list(data: Any, cls: type[_T]) -> list[_T]:
    """Build a list of `cls` from a decoded JSON array (a page of a list endpoint)."""
    if data.__class__ is not list:
        raise FieldError(f"an array of {cls.__name__}", data)
    hook = converter.get_structure_hook(cls)
    try:
        return [hook(item, cls) for item in data]
    except FieldError:
        pass
    for index, item in enumerate(data):
        try:
            hook(item, cls)
        except FieldError as error:
            raise error.within(index) from None
    raise AssertionError("unreachable")  # pragma: no cover


def unstructure(obj: Any) -> Any:
    """Turn a model (or a list of models) into JSON-able data with wire names."""
    if isinstance(obj, list):
        return [unstructure(item) for item in typing.cast("list[object]", obj)]
    return converter.get_unstructure_hook(type(obj))(obj)
