"""The CSV export's fast path: a page checked against its model a column at a time.

The model check (`check_list`) walks a page record by record and field by field in Python.
`ColumnCheck` asks the same questions of whole columns, mostly in C: the set of a column's
classes (one `map(type, ...)` pass), then, only for the leaves that need it, the values
(`datetime.fromisoformat` and `Decimal` mapped over the column's strings, `math.isfinite` over
its floats). The columns are the ones the CSV writer reads for its cells (`PageColumns`), so a page
is walked once for both.

It is stricter than the model check, never looser: it accepts a column only in the forms that
the compiled check hooks accept without a second look (a `str` for a string, a `bool`, an
`int` or a finite `float` for a number, a date-time string `fromisoformat` parses, a finite
decimal string, a `dict` for an object, a `list` of such for an array, nested models field by
field), and a required field must hold a value (a money amount sent as a JSON number, which
the models take, is among what it leaves to them). Anything else makes it answer False: the
page then goes through `check_list`, which names the record and field, or accepts it.
"""

from __future__ import annotations

import collections
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from itertools import chain, repeat
from typing import Any

from .._model_hooks import is_model, model_fields

__all__ = ["ColumnCheck", "PageColumns"]

_NONE = type(None)
_DICT = frozenset({dict})
_EMPTY: dict[str, Any] = {}
_GET: Callable[[dict[str, Any], str], Any] = dict[str, Any].get
_fromisoformat = datetime.fromisoformat
_drain = collections.deque[Any](maxlen=0).extend  # runs an iterator through, keeping nothing

ValueCheck = Callable[[list[Any]], bool]


def _date_times(values: list[Any]) -> bool:
    try:
        _drain(map(_fromisoformat, values))
    except ValueError:
        return False
    return True


def _decimals(values: list[Any]) -> bool:
    try:
        return all(map(Decimal.is_finite, map(Decimal, values)))
    except (ArithmeticError, ValueError):
        return False


def _numbers(values: list[Any]) -> bool:
    return all(map(math.isfinite, [v for v in values if v.__class__ is float]))


def _leaf(tp: Any) -> tuple[frozenset[type] | None, ValueCheck | None, Any]:
    """(classes a value may have (None: any), a check of the values, the nested model or
    list item type to descend into)."""
    if tp is str:
        return frozenset({str}), None, None
    if tp is bool:
        return frozenset({bool}), None, None
    if tp is float or tp is int:
        return frozenset({int, float}), _numbers, None
    if tp is datetime:
        return frozenset({str}), _date_times, None
    if tp is Decimal:
        return frozenset({str}), _decimals, None
    if tp is Any:
        return None, None, None
    origin = typing.get_origin(tp)
    if tp is dict or origin is dict or origin is Mapping:
        return frozenset({dict}), None, None
    if origin is list:
        (item,) = typing.get_args(tp)
        _leaf(item)  # a list of what the check does not know: TypeError now
        return frozenset({list}), None, ("list", item)
    if is_model(tp):
        return frozenset({dict}), None, ("model", tp)
    raise TypeError(f"no column check for {tp!r}")


def _no_nones(values: list[Any]) -> list[Any]:
    return [v for v in values if v is not None]


class ColumnCheck:
    """Checks pages of one model column-wise; `__call__` is True only when every record of the
    page would pass the model check (see the module)."""

    def __init__(self, model: type) -> None:
        """Raises `TypeError` for a model with a field type the check does not know."""
        self._fields = [
            (wire, optional, *_leaf(tp)) for _field, wire, tp, optional in model_fields(model)
        ]

    @classmethod
    def for_model(cls, model: type | None) -> ColumnCheck | None:
        """The check of `model`, or None when it is not a model the check handles."""
        if model is None or not is_model(model):
            return None
        try:
            return cls(model)
        except TypeError:
            return None

    def __call__(self, columns: PageColumns, prefix: tuple[str, ...] = ()) -> bool:
        """True when the objects at `prefix` (the records, for `()`) all pass the model check;
        `columns` reads the page."""
        for wire, nullable, kinds, check, below in self._fields:
            path = (*prefix, wire)
            values = columns.values(path)
            classes = set(columns.kinds(path))
            if _NONE in classes:
                if not nullable:
                    return False
                classes.discard(_NONE)
                if not classes:
                    continue
                present = None
            else:
                present = values
            if kinds is not None and not classes <= kinds:
                return False
            if check is None and below is None:
                continue
            if present is None:
                present = _no_nones(values)
            if check is not None and not check(present):
                return False
            if below is not None:
                how, tp = below
                if how == "model":
                    # the page's own columns below `path` when every object is there (shared
                    # with the cells), else a page of the objects that are
                    nested = columns if present is values else PageColumns(present)
                    if not _model(tp)(nested, path if present is values else ()):
                        return False
                elif not _items(tp, present):
                    return False
        return True


_MODEL_CHECKS: dict[type, ColumnCheck] = {}


def _model(model: type) -> ColumnCheck:
    # Built when first reached (a model that contains itself is not compiled forever).
    check = _MODEL_CHECKS.get(model)
    if check is None:
        check = _MODEL_CHECKS[model] = ColumnCheck(model)
    return check


def _items(item: Any, lists: list[Any]) -> bool:
    """True when every item of every list of `lists` passes the check of `item`."""
    values = list(chain.from_iterable(lists))
    if not values:
        return True
    kinds, check, below = _leaf(item)
    classes = set(map(type, values))
    if kinds is not None and not classes <= kinds:
        return False  # None items included: the models refuse them
    if check is not None and not check(values):
        return False
    if below is None:
        return True
    how, tp = below
    if how == "list":
        return _items(tp, values)
    return _model(tp)(PageColumns(values))


class PageColumns:
    """A page of records (dicts) read a column at a time: the values at a key path
    (`("billing", "city")`; a missing key, or a level that is not an object, reads as None) and
    their classes, each worked out once per page."""

    def __init__(self, records: Sequence[dict[str, Any]]) -> None:
        """`records`: the page, every record a dict."""
        self._records = records
        self._count = len(records)
        self._values: dict[tuple[str, ...], list[Any]] = {}
        self._kinds: dict[tuple[str, ...], set[type]] = {}
        self._objects: dict[tuple[str, ...], list[Any] | None] = {}  # see `_objects_at`

    def values(self, path: tuple[str, ...]) -> list[Any]:
        """The values at `path`, one per record."""
        known = self._values.get(path)
        if known is not None:
            return known
        key = path[-1]
        if len(path) == 1:
            # `map` over the unbound `dict.get`: the loop runs in C
            result = list(map(_GET, self._records, repeat(key)))
        else:
            objects = self._objects_at(path[:-1])
            if objects is None:
                result = [None] * self._count
            else:
                result = list(map(_GET, objects, repeat(key)))
        self._values[path] = result
        return result

    def kinds(self, path: tuple[str, ...]) -> set[type]:
        """The classes of the values at `path`."""
        known = self._kinds.get(path)
        if known is None:
            values = self.values(path)
            # a column with no value at all (an optional field nobody sent) needs no type pass
            none = values.count(None) == self._count
            known = {_NONE} if none else set(map(type, values))
            self._kinds[path] = known
        return known

    def _objects_at(self, path: tuple[str, ...]) -> list[dict[str, Any]] | None:
        """The values at `path` with anything but an object read as an empty one (None when
        there is no object there in the whole page)."""
        if path in self._objects:
            return self._objects[path]
        kinds = self.kinds(path)
        values = self.values(path)
        objects: list[Any] | None
        if dict not in kinds:
            objects = None
        elif kinds <= _DICT:
            objects = values
        else:
            objects = [v if v.__class__ is dict else _EMPTY for v in values]
        self._objects[path] = objects
        return objects
