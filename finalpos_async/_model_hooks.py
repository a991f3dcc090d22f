"""The package's cattrs `Converter` and the per-class hooks it uses for the generated models.

cattrs' generated attrs hooks cannot keep unknown keys (python-attrs/cattrs#580) and report
errors as exception groups without a single field path, so every model gets a hook compiled
here, once per class and cached by the converter's dispatch (only public cattrs API is used:
hook factories and `get_structure_hook`/`get_unstructure_hook`):

- the wire name of a field is its camelCase form (`first_name` <-> `firstName`), unless the
  field's metadata says otherwise (`metadata={"wire": "_id"}`);
- keys the model does not know go to the model's `extra` mapping and are written back on
  unstructure, so a read-modify-write round trip loses nothing;
- a `None` field is left out on unstructure; unstructure also checks every value's type.
"""

from __future__ import annotations

import itertools
import linecache
import re
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import attrs
import cattrs

from ._field_error import FieldError, MissingFieldError
from ._wire_values import (
    check_any,
    check_bool,
    check_number,
    check_object,
    check_str,
    check_str_list,
    dump_datetime,
    dump_decimal,
    list_of,
    parse_datetime,
    parse_decimal,
)

__all__ = [
    "Leaf",
    "check_hook",
    "converter",
    "is_model",
    "leaf_for",
    "model_fields",
    "wire_name",
]

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


class Leaf:
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


def leaf_for(tp: Any, *, checking: bool = False) -> Leaf:
    """How to read and write `tp`; with `checking`, nested models are only checked, not built
    (their `parse` is `check_hook`'s, which returns None)."""
    if tp is str:
        return Leaf(check_str, check_str, str)
    if tp is bool:
        return Leaf(check_bool, check_bool, bool)
    if tp is float or tp is int:
        return Leaf(check_number, check_number, None)
    if tp is datetime:
        return Leaf(parse_datetime, dump_datetime, None)
    if tp is Decimal:
        return Leaf(parse_decimal, dump_decimal, None)
    if tp is Any:
        return Leaf(check_any, check_any, None)
    origin = typing.get_origin(tp)
    if tp is dict or origin is dict or origin is Mapping:
        return Leaf(check_object, check_object, dict)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        item = leaf_for(item_tp, checking=checking)
        parse_list = check_str_list if item_tp is str else list_of(item.parse, dumping=False)
        return Leaf(
            parse_list,
            list_of(item.dump, dumping=True),
            None,
            item_parse=item.parse if is_model(item_tp) else None,
        )
    if is_model(tp):
        model = tp
        # Resolved now (compiling the nested model's hooks first), so a call costs no dispatch.
        # Our compiled hooks take the type argument as optional, so they are called with one.
        parse = (
            check_hook(model)
            if checking
            else typing.cast("Callable[[Any], Any]", converter.get_structure_hook(model))
        )
        unstructure_model = converter.get_unstructure_hook(model)

        def dump(value: Any) -> Any:
            if value.__class__ is model or isinstance(value, model):
                return unstructure_model(value)
            raise FieldError(model.__name__, value)

        return Leaf(parse, dump, None)
    raise TypeError(f"no converter hook for the annotation {tp!r}")


def model_fields(cls: type) -> list[tuple[attrs.Attribute[Any], str, Any, bool]]:
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
    fields = model_fields(cls)
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
        lines += _structure_field(i, field, wire, tp, optional, ns)
    # A dict with more keys than the model has fields surely carries unknown ones: the length
    # test skips building issuperset's temporary set for such records (custom fields). The
    # comprehension walks the keys, not the items: only the few unknown ones are looked up.
    lines += [
        f"    if len(data) <= {len(fields)} and known.issuperset(data):",
        "        obj.extra = {}",
        "    else:",
        "        obj.extra = {k: data[k] for k in data if k not in known}",
        "    return obj",
    ]
    fn = _compile(f"structure_{cls.__name__}", lines, ns)
    return typing.cast("Callable[[Any, Any], Any]", fn)


def _make_check_hook(cls: type) -> Callable[[Any], None]:
    """Compile `check(data) -> None`: the structure hook's tests and errors, building nothing.

    The same lines as `_make_structure_hook`'s (each value is read and converted the same way,
    nested models are checked by their own check hook) without the object, its slots and its
    `extra`: a record passes it exactly when `structure` would build it.
    """
    fields = model_fields(cls)
    ns: dict[str, Any] = {
        "FieldError": FieldError,
        "Missing": MissingFieldError,
        "fromisoformat": datetime.fromisoformat,
        "utc": timezone.utc,
        "Decimal": Decimal,
    }
    lines = [
        f"def check_{cls.__name__}(data, _type=None):",
        "    if data.__class__ is not dict:",
        f"        raise FieldError({cls.__name__!r} + ' object', data)",
        "    get = data.get",
    ]
    for i, (field, wire, tp, optional) in enumerate(fields):
        lines += _structure_field(i, field, wire, tp, optional, ns, checking=True)
    lines.append("    return None")
    return typing.cast("Callable[[Any], None]", _compile(f"check_{cls.__name__}", lines, ns))


_CHECK_HOOKS: dict[type, Callable[[Any], None]] = {}


def check_hook(cls: type) -> Callable[[Any], None]:
    """The compiled check of the model `cls` (see `_make_check_hook`), built on first use."""
    hook = _CHECK_HOOKS.get(cls)
    if hook is None:
        hook = _CHECK_HOOKS[cls] = _make_check_hook(cls)
    return hook


def _structure_field(
    i: int,
    field: attrs.Attribute[Any],
    wire: str,
    tp: Any,
    optional: bool,
    ns: dict[str, Any],
    *,
    checking: bool = False,
) -> list[str]:
    """The structure hook's lines for field number `i` (its helpers go into `ns`); with
    `checking`, the check hook's (the value is not kept)."""
    lines: list[str] = []
    leaf = leaf_for(tp, checking=checking)
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
    # The class test first: for the usual present value it settles the field in one test.
    conditions = [f"v.__class__ is not x{i}"] if leaf.exact is not None else []
    if optional:
        conditions.append("v is not None")
    fast = _conversion(i, tp, leaf, ns)
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
    if not checking:
        lines.append(f"    obj.{field.name} = v")
    return lines


def _conversion(i: int, tp: Any, leaf: Leaf, ns: dict[str, Any]) -> list[str]:
    """The lines converting `v` for field number `i`: inline fast paths for the common cases."""
    if tp is datetime:
        # Inline fast path (no call) for a well-formed timestamp; anything else (a "Z"
        # suffix on 3.10, a wrong type, garbage) goes through the parser, which names it.
        return [
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
    if tp is Decimal:
        # The same for money: a decimal string becomes a Decimal without a call.
        return [
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
    if typing.get_origin(tp) is list and typing.get_args(tp) == (str,):
        # A list of strings checked inline (it is kept, not copied); the parser names a bad item.
        return [
            "if v.__class__ is list:",
            "    for item in v:",
            "        if item.__class__ is not str:",
            f"            v = p{i}(v)",
            "            break",
            "else:",
            f"    v = p{i}(v)",
        ]
    if leaf.item_parse is not None:
        ns[f"h{i}"] = leaf.item_parse
        # A list of models mapped inline; on a bad item the parser runs again to name its index.
        return [
            "if v.__class__ is list:",
            "    try:",
            f"        v = [h{i}(item) for item in v]",
            "    except FieldError:",
            f"        v = p{i}(v)",
            "else:",
            f"    v = p{i}(v)",
        ]
    return [f"v = p{i}(v)"]


def _make_unstructure_hook(cls: type) -> Callable[[Any], dict[str, Any]]:
    """Compile `unstructure(obj) -> dict`: checks each value's type and leaves `None` out."""
    fields = model_fields(cls)
    ns: dict[str, Any] = {"FieldError": FieldError, "Missing": MissingFieldError}
    lines = [f"def unstructure_{cls.__name__}(obj):", "    out = {}"]
    for i, (field, wire, tp, optional) in enumerate(fields):
        leaf = leaf_for(tp)
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
    conv.register_structure_hook(Decimal, lambda v, _t: parse_decimal(v))
    conv.register_unstructure_hook(Decimal, dump_decimal)
    conv.register_structure_hook(datetime, lambda v, _t: parse_datetime(v))
    conv.register_unstructure_hook(datetime, dump_datetime)
    return conv


converter: cattrs.Converter = _make_converter()
"""The package's converter. Hooks are built on first use of a type and cached."""
