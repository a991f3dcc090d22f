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
from ._model_hooks import check_hook, converter, is_model, wire_name
from ._params import unstructure_params

__all__ = [
    "FieldError",
    "MissingFieldError",
    "check_list",
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


def structure_list(data: Any, cls: type[_T], *, consume: bool = False) -> list[_T]:
    """Build a list of `cls` from a decoded JSON array (a page of a list endpoint).

    With `consume=True` each element of `data` is replaced by `None` as soon as its model is
    built, for a `data` that only the caller holds: the decoded records then die one by one
    instead of all living until the page is built, so fewer objects are alive (and promoted
    by the collections that run) while a page is structured.
    """
    if data.__class__ is not list:
        raise FieldError(f"an array of {cls.__name__}", data)
    hook = _STRUCTURE_HOOKS.get(cls)
    if hook is None:
        hook = _STRUCTURE_HOOKS[cls] = converter.get_structure_hook(cls)
    out: list[_T] = []
    append = out.append
    index = 0
    try:
        if consume:
            for item in data:
                append(hook(item, cls))
                data[index] = None
                index += 1
        else:
            for item in data:
                append(hook(item, cls))
                index += 1
    except FieldError as error:
        raise error.within(index) from None
    return out


def check_list(data: Any, cls: type) -> None:
    """Raise what `structure_list(data, cls)` would raise, without building the models.

    For a caller that keeps the decoded records (`finalpos export` writes them as sent):
    about half the cost of building them.
    """
    if data.__class__ is not list:
        raise FieldError(f"an array of {cls.__name__}", data)
    if cls is dict:  # an undocumented item: any object
        for index, item in enumerate(data):
            if item.__class__ is not dict:
                raise FieldError("object", item, (index,))
        return
    hook = check_hook(cls)
    index = 0
    try:
        for item in data:
            hook(item)
            index += 1
    except FieldError as error:
        raise error.within(index) from None


def unstructure(obj: Any) -> Any:
    """Turn a model (or a list of models) into JSON-able data with wire names."""
    if isinstance(obj, list):
        return [unstructure(item) for item in typing.cast("list[object]", obj)]
    return converter.get_unstructure_hook(type(obj))(obj)
