"""The one cattrs `Converter` of the package: wire JSON <-> the generated attrs models.

cattrs' generated attrs hooks cannot keep unknown keys (python-attrs/cattrs#580) and report errors
as exception groups without a single field path, so every model gets a hook compiled here, once
per class and cached by the converter's dispatch:

- the wire name of a field is its camelCase form (`first_name` <-> `firstName`), unless the field's
  metadata says otherwise (`metadata={"wire": "_id"}`);
- keys the model does not know go to the model's `extra` mapping and are written back on
  unstructure, so a read-modify-write round trip loses nothing;
- `datetime` fields are timezone-aware (a naive timestamp from the server is taken as UTC);
  `Decimal` fields are decimal strings on the wire and go back as the same string, never via float;
  `float` fields (the spec's `number`) keep integral values as `int`;
- a value of the wrong shape raises `FieldError` naming the path (`billing.firstName`,
  `[3].totalSpent`) and the received type; callers turn it into `ResponseValidationError` (for a
  response body) or leave it as the `TypeError`/`ValueError` it is (for a request argument);
- a `None` field is left out on unstructure (the API treats a missing and a null field alike on
  read, and on write leaving it out keeps the stored value).

Unstructure also checks types, so a model built by hand with a wrong value fails before any request.
"""

from __future__ import annotations

import itertools
import linecache
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import attrs
import cattrs

from ._types import NotGiven

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

_JSON_TYPE_NAMES: dict[type[object], str] = {
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _type_name(value: object) -> str:
    cls = type(value)
    return _JSON_TYPE_NAMES.get(cls, cls.__name__)


class FieldError(TypeError):
    """A value does not fit the model: `path` names the field, `expected` what should be there.

    `str(error)` reads `billing.firstName: expected string, got number`.
    """

    def __init__(self, expected: str, value: object, path: tuple[str | int, ...] = ()) -> None:
        self.expected = expected
        self.received_type = _type_name(value)
        self.path = path
        super().__init__(self._message())

    def _message(self) -> str:
        where = self.path_str or "<root>"
        return f"{where}: expected {self.expected}, got {self.received_type}"

    @property
    def path_str(self) -> str:
        """The path as text: `metadata[0].key`."""
        out = ""
        for part in self.path:
            if isinstance(part, int):
                out += f"[{part}]"
            else:
                out += f".{part}" if out else part
        return out

    def within(self, part: str | int) -> FieldError:
        """This error, one level deeper (the caller's field name or list index first)."""
        self.path = (part, *self.path)
        self.args = (self._message(),)
        return self


class MissingFieldError(FieldError, ValueError):
    """A required field is absent (a `ValueError` as well as a `TypeError`)."""

    def __init__(self, path: tuple[str | int, ...] = ()) -> None:
        super().__init__("a value (required field)", _MISSING, path)
        self.received_type = "nothing"
        self.args = (self._message(),)


class _Missing:
    pass


_MISSING = _Missing()


# ---------------------------------------------------------------------------------------------
# Names


_CAMEL_BOUNDARY = re.compile(r"_([a-z0-9])")


def is_model(tp: Any) -> bool:
    """True for an API model: an attrs class with the `extra` mapping (other attrs classes are
    left to cattrs' defaults)."""
    return isinstance(tp, type) and attrs.has(tp) and "extra" in attrs.fields_dict(tp)


def wire_name(field: attrs.Attribute[Any]) -> str:
    """The JSON key of a model field: its metadata `wire` entry, else its camelCase name."""
    explicit = field.metadata.get("wire")
    if explicit is not None:
        return str(explicit)
    return _CAMEL_BOUNDARY.sub(lambda m: m.group(1).upper(), field.name)


# ---------------------------------------------------------------------------------------------
# Leaf values: each takes a value and returns it converted, or raises FieldError (empty path).


def _parse_datetime(value: Any) -> datetime:
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


def _dump_datetime(value: Any) -> str:
    if not isinstance(value, datetime):
        raise FieldError("a datetime", value)
    if value.tzinfo is None:
        raise FieldError("a timezone-aware datetime", value)
    # Milliseconds, as the API writes them, unless the value carries finer precision.
    spec = "microseconds" if value.microsecond % 1000 else "milliseconds"
    return value.isoformat(timespec=spec)


def _parse_decimal(value: Any) -> Decimal:
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


def _dump_decimal(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise FieldError("a finite Decimal", value)
        return str(value)
    if isinstance(value, str):
        return str(_parse_decimal(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    # A float would already have lost digits; refuse it rather than send a rounded amount.
    raise FieldError("a Decimal or a decimal string", value)


def _check_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise FieldError("string", value)


def _check_bool(value: Any) -> bool:
    if value is True or value is False:
        return bool(value)
    raise FieldError("boolean", value)


def _check_number(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise FieldError("a finite number", value)
        return value
    raise FieldError("number", value)


def _check_object(value: Any) -> dict[str, Any]:
    if value.__class__ is dict:
        return typing.cast("dict[str, Any]", value)
    if isinstance(value, Mapping):
        return dict(typing.cast("Mapping[str, Any]", value))
    raise FieldError("object", value)


def _check_any(value: Any) -> Any:
    return value


def _check_str_list(value: Any) -> list[str]:
    """A list of strings, kept as the same list object (no copy) when it is one."""
    if value.__class__ is not list:
        raise FieldError("array", value)
    for index, item in enumerate(value):
        if item.__class__ is not str:
            raise FieldError("string", item, (index,))
    return typing.cast("list[str]", value)


def _is_non_text_sequence(value: object) -> bool:
    # A plain bool, not a type guard: `convert` below keeps `value` as `Any` (iterating it as a
    # narrowed `Sequence[Unknown]` would need a cast per call on the hot path).
    return not isinstance(value, (str, bytes)) and isinstance(value, Sequence)


def _list_of(item: Callable[[Any], Any], *, dumping: bool) -> Callable[[Any], list[Any]]:
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


# ---------------------------------------------------------------------------------------------
# Per-class hooks, compiled once.


class _Leaf:
    """How to read and write one annotated type (without its `| None`)."""

    def __init__(
        self,
        parse: Callable[[Any], Any],
        dump: Callable[[Any], Any],
        exact: type | None,
        *,
        item_parse: Callable[[Any], Any] | None = None,
    ):
        self.parse = parse
        self.dump = dump
        # When set, a value of exactly this class needs no conversion: the compiled code tests
        # `v.__class__ is exact` inline and calls `parse` only otherwise (the common case is free).
        self.exact = exact
        # For a list of models: the item hook, which the compiled structure code maps over the
        # list inline (one call layer less per list); `parse` stays the error-naming slow path.
        self.item_parse = item_parse


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != len(typing.get_args(tp)):
            if len(args) == 1:
                return args[0], True
            return typing.Union[tuple(args)], True  # noqa: UP007 - built from a runtime tuple
    return tp, False


def _leaf_for(tp: Any) -> _Leaf:
    if tp is str:
        return _Leaf(_check_str, _check_str, str)
    if tp is bool:
        return _Leaf(_check_bool, _check_bool, bool)
    if tp is float or tp is int:
        return _Leaf(_check_number, _check_number, None)
    if tp is datetime:
        return _Leaf(_parse_datetime, _dump_datetime, None)
    if tp is Decimal:
        return _Leaf(_parse_decimal, _dump_decimal, None)
    if tp is Any:
        return _Leaf(_check_any, _check_any, None)
    origin = typing.get_origin(tp)
    if tp is dict or origin is dict or origin is Mapping:
        return _Leaf(_check_object, _check_object, dict)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        item = _leaf_for(item_tp)
        parse_list = _check_str_list if item_tp is str else _list_of(item.parse, dumping=False)
        return _Leaf(
            parse_list,
            _list_of(item.dump, dumping=True),
            None,
            item_parse=item.parse if is_model(item_tp) else None,
        )
    if is_model(tp):
        model = tp
        # Resolved now (compiling the nested model's hooks first), so a call costs no dispatch.
        # Our compiled hooks take the type argument as optional, so they are called with one.
        parse = typing.cast("Callable[[Any], Any]", converter.get_structure_hook(model))
        unstructure_model = converter.get_unstructure_hook(model)

        def dump(value: Any) -> Any:
            if value.__class__ is model or isinstance(value, model):
                return unstructure_model(value)
            raise FieldError(model.__name__, value)

        return _Leaf(parse, dump, None)
    raise TypeError(f"no converter hook for the annotation {tp!r}")


def _model_fields(cls: type) -> list[tuple[attrs.Attribute[Any], str, Any, bool]]:
    """(field, wire name, annotation without None, optional?) for every field but `extra`."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[attrs.Attribute[Any], str, Any, bool]] = []
    for field in attrs.fields(cls):
        if field.name == "extra":
            continue
        tp, optional = _strip_optional(hints[field.name])
        out.append((field, wire_name(field), tp, optional))
    return out


_HOOK_NUMBERS = itertools.count(1)


def _compile(name: str, lines: list[str], namespace: dict[str, Any]) -> Any:
    source = "\n".join(lines) + "\n"
    filename = f"<finalpos hook {name} #{next(_HOOK_NUMBERS)}>"
    # Registered with linecache so tracebacks through a hook show its source.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)  # our own generated source
    return namespace[name]


def _make_structure_hook(cls: type) -> Callable[[Any, Any], Any]:
    """Compile `structure(data) -> cls`: one straight-line function, no per-field dispatch.

    Each field costs a `dict.get` and, for plain values, one class test inline; conversions
    (dates, money, nested models, lists) are one call each.
    """
    fields = _model_fields(cls)
    ns: dict[str, Any] = {
        "cls": cls,
        "new": object.__new__,
        "FieldError": FieldError,
        "Missing": MissingFieldError,
        "known": frozenset(w for _, w, _, _ in fields),
        "fromisoformat": datetime.fromisoformat,
        "utc": timezone.utc,
        "Decimal": Decimal,
    }
    # The object is made with object.__new__ and its slots set one by one: the same result as
    # attrs' __init__ (the models have no validators or converters), at about half the cost.
    lines = [
        f"def structure_{cls.__name__}(data, _type=None):",
        "    if data.__class__ is not dict:",
        f"        raise FieldError({cls.__name__!r} + ' object', data)",
        "    get = data.get",
        "    obj = new(cls)",
    ]
    for i, (field, wire, tp, optional) in enumerate(fields):
        leaf = _leaf_for(tp)
        ns[f"p{i}"] = leaf.parse
        ns[f"x{i}"] = leaf.exact
        if field.default is attrs.NOTHING and not optional:
            lines += [
                f"    v = get({wire!r}, Missing)",
                "    if v is Missing:",
                f"        raise Missing(({wire!r},))",
            ]
        else:
            lines.append(f"    v = get({wire!r})")
        conditions = ["v is not None"] if optional else []
        if leaf.exact is not None:
            conditions.append(f"v.__class__ is not x{i}")
        if tp is datetime:
            # Inline fast path (no call) for a well-formed timestamp; anything else (a "Z"
            # suffix on 3.10, a wrong type, garbage) goes through the parser, which names it.
            fast = [
                "if v.__class__ is str:",
                "    try:",
                "        v = fromisoformat(v)",
                "    except ValueError:",
                f"        v = p{i}(v)",
                "    else:",
                "        if v.tzinfo is None:",
                "            v = v.replace(tzinfo=utc)",
                "else:",
                f"    v = p{i}(v)",
            ]
        elif tp is Decimal:
            # The same for money: a decimal string becomes a Decimal without a call.
            fast = [
                "if v.__class__ is str:",
                "    try:",
                "        d = Decimal(v)",
                "    except ArithmeticError:",
                f"        v = p{i}(v)",
                "    else:",
                f"        v = d if d.is_finite() else p{i}(v)",
                "else:",
                f"    v = p{i}(v)",
            ]
        elif leaf.item_parse is not None:
            ns[f"h{i}"] = leaf.item_parse
            # A list of models mapped inline; on a bad item the parser runs again to name its index.
            fast = [
                "if v.__class__ is list:",
                "    try:",
                f"        v = [h{i}(item) for item in v]",
                "    except FieldError:",
                f"        v = p{i}(v)",
                "else:",
                f"    v = p{i}(v)",
            ]
        else:
            fast = [f"v = p{i}(v)"]
        convert = [
            "try:",
            *("    " + line for line in fast),
            "except FieldError as e:",
            f"    raise e.within({wire!r}) from None",
        ]
        if conditions:
            lines.append(f"    if {' and '.join(conditions)}:")
            lines += ["        " + line for line in convert]
        else:
            lines += ["    " + line for line in convert]
        lines.append(f"    obj.{field.name} = v")
    # A dict with more keys than the model has fields surely carries unknown ones: the length
    # test skips building issuperset's temporary set for such records (custom fields).
    lines += [
        f"    if len(data) <= {len(fields)} and known.issuperset(data):",
        "        obj.extra = {}",
        "    else:",
        "        obj.extra = {k: v for k, v in data.items() if k not in known}",
        "    return obj",
    ]
    fn = _compile(f"structure_{cls.__name__}", lines, ns)
    return typing.cast("Callable[[Any, Any], Any]", fn)


def _make_unstructure_hook(cls: type) -> Callable[[Any], dict[str, Any]]:
    """Compile `unstructure(obj) -> dict`: checks each value's type and leaves `None` out."""
    fields = _model_fields(cls)
    ns: dict[str, Any] = {"FieldError": FieldError, "Missing": MissingFieldError}
    lines = [f"def unstructure_{cls.__name__}(obj):", "    out = {}"]
    for i, (field, wire, tp, optional) in enumerate(fields):
        leaf = _leaf_for(tp)
        ns[f"d{i}"] = leaf.dump
        ns[f"x{i}"] = leaf.exact
        convert = [
            "try:",
            f"    v = d{i}(v)",
            "except FieldError as e:",
            f"    raise e.within({field.name!r}) from None",
        ]
        if leaf.exact is not None and leaf.exact is not dict:
            convert = [f"if v.__class__ is not x{i}:", *("    " + line for line in convert)]
        lines += [f"    v = obj.{field.name}", "    if v is not None:"]
        lines += ["        " + line for line in convert]
        lines.append(f"        out[{wire!r}] = v")
        if not optional:
            lines += ["    else:", f"        raise Missing(({field.name!r},))"]
    lines += [
        "    extra = obj.extra",
        "    if extra:",
        "        for k, v in extra.items():",
        "            out.setdefault(k, v)",
        "    return out",
    ]
    fn = _compile(f"unstructure_{cls.__name__}", lines, ns)
    return typing.cast("Callable[[Any], dict[str, Any]]", fn)


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=False)
    conv.register_structure_hook_factory(is_model, _make_structure_hook)
    conv.register_unstructure_hook_factory(is_model, _make_unstructure_hook)
    conv.register_structure_hook(Decimal, lambda v, _t: _parse_decimal(v))
    conv.register_unstructure_hook(Decimal, _dump_decimal)
    conv.register_structure_hook(datetime, lambda v, _t: _parse_datetime(v))
    conv.register_unstructure_hook(datetime, _dump_datetime)
    return conv


converter: cattrs.Converter = _make_converter()
"""The package's converter. Hooks are built on first use of a type and cached."""


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


# ---------------------------------------------------------------------------------------------
# Request arguments


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
            for field, wire, tp, optional in _model_fields(cls)
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
        return _list_of(_param_dumper(item_tp), dumping=True)
    if tp is datetime:
        return lambda v: _dump_datetime(_parse_datetime(v) if isinstance(v, str) else v)
    return _leaf_for(tp).dump


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
