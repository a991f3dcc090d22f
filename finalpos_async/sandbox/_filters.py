"""The equality filters of list operations (``?tableId=...``): one rule, run two ways.

The rule: a record matches when each filtered top-level field equals the query's value read as a
string: a string field equal to it; another value whose Python `str` is it (``1`` for ``"1"``,
``True`` for ``"True"``, a missing or null field for ``"None"``); an ObjectId wrapper
``{"$oid": value}``. `FieldsEqual(record)` applies it in Python (the memory store, and the last
word everywhere).

`FieldsEqual.sql()` gives the SQLite store a condition on the stored JSON that every matching
record meets and few others do: the store reads only the rows that meet it, through an index on
the field's value, and applies the rule to those in Python, so its pages are the memory store's
by construction, in milliseconds at any size instead of a decode of the whole collection.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, cast

import attrs

__all__ = ["Condition", "FieldsEqual", "matches"]

# Fields whose name goes into SQL text as is (expression indexes need literal paths); a filter on
# another name is applied in Python over the whole collection, as before.
_PLAIN_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def matches(field: Any, wanted: str) -> bool:
    """Whether a record's `field` value matches the query value `wanted` (see the module)."""
    if isinstance(field, dict):  # ObjectId wrappers: {"$oid": "..."}
        return cast("dict[str, Any]", field).get("$oid") == wanted
    return field == wanted or str(field) == wanted


@attrs.frozen
class Condition:
    """SQL over the `records` table's `data` column that the rows worth reading meet."""

    where: str
    """Terms joined by AND, with ``?`` placeholders for `params`."""
    params: tuple[str, ...]
    indexes: tuple[str, ...]
    """``CREATE INDEX IF NOT EXISTS`` statements of the indexes `where` may read through."""
    index: str | None
    """The index to read through (``INDEXED BY``), if any: without statistics, SQLite would
    rather walk the whole collection through its position index, to skip sorting the rows."""


@attrs.frozen
class FieldsEqual:
    """A list's filter: every `(field, value)` pair matches (`matches`); a `Predicate`."""

    fields: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, filters: Mapping[str, str]) -> FieldsEqual:
        """The filter of a query's field -> value pairs."""
        return cls(tuple(filters.items()))

    def __call__(self, record: Mapping[str, Any]) -> bool:
        return all(matches(record.get(field), wanted) for field, wanted in self.fields)

    def sql(self) -> Condition | None:
        """A condition every matching record's stored JSON meets; None if no field has one."""
        terms: list[str] = []
        params: list[str] = []
        indexes: list[str] = []
        names: list[str] = []
        for field, wanted in self.fields:
            if not _PLAIN_FIELD.match(field):
                continue
            value = _value_sql(field)
            term = f"{value} = ?"
            others = _other_types(wanted)
            if not others:
                # the key leads with the collection: a filtered list reads one collection; the
                # name's hash tells apart fields SQLite's case-blind names would not
                name = f"records_by_{field}_{hashlib.sha256(field.encode()).hexdigest()[:8]}"
                key = f"collection, {value}"
                indexes.append(f"CREATE INDEX IF NOT EXISTS {name} ON records ({key})")
                names.append(name)
            else:
                # values a string compare misses (str(1) == "1"): read those rows too; this term
                # cannot use the index, so such a filter scans the collection in SQLite (Python
                # still decodes only the rows that meet it)
                kinds = ", ".join(f"'{kind}'" for kind in others)
                kind = f"coalesce(json_type(data, '$.\"{field}\"'), 'null')"
                term = f"({term} OR {kind} IN ({kinds}))"
            terms.append(term)
            params.append(wanted)
        if not terms:
            return None
        return Condition(
            " AND ".join(terms), tuple(params), tuple(indexes), names[0] if names else None
        )


def _value_sql(field: str) -> str:
    """The field's value in SQL: the string inside an ObjectId wrapper, else the value itself
    (a JSON string comes out as TEXT, equal to the query's value exactly when the rule says)."""
    path = f'$."{field}"'
    return f"coalesce(json_extract(data, '{path}.\"$oid\"'), json_extract(data, '{path}'))"


def _other_types(wanted: str) -> tuple[str, ...]:
    """The JSON types (`json_type`, "null" for a missing field) whose values' `str` may be
    `wanted` although the value is no string equal to it."""
    kinds: list[str] = []
    try:
        float(wanted)
    except ValueError:
        pass
    else:
        kinds += ["integer", "real"]
    if wanted in ("True", "False"):
        kinds += ["true", "false"]
    if wanted == "None":
        kinds.append("null")
    if wanted.startswith("["):
        kinds.append("array")
    return tuple(kinds)
