"""Finding an item in the target by what it sent, when it has no key: the no-key lookup rule.

An item sent with no natural key (`key=None`) is named by its content. When its answer was lost,
the run finds it in the target by comparing the fields it sent with each listed record, in their
typed form: numbers as decimals (`12.5` is `"12.50"`), date-times as instants (`...Z` is
`...+00:00`), nested objects and lists field by field, `snake_case` and `camelCase` names alike.
Fields the item did not send (or sent as null) are not compared: the server fills those.

Identical items are counted, not told apart: when a content was sent `n` times in this job and
`s` of those are known to be created, and the target holds `m` records with that content, then
`m - s` of the unknown ones are in the target (the first ones, in input order) and the rest are
not. A record already in the target before the job, identical to an item, counts as that item.

A record that matches only *nearly* (the same but for letter case or spacing in a text field,
which a server may normalize) is never taken for the item, and the item is never sent again
because of it: it is reported unknown, naming the record.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import hashlib
import re
from collections.abc import Mapping
from typing import Any, cast

import attrs

__all__ = ["Canonical", "ContentIndex", "canonical_fields", "fields_of", "projection_digests"]

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def fields_of(value: object) -> Mapping[str, Any] | None:
    """A record or item as a mapping with snake_case names (None when it is neither)."""
    if isinstance(value, Mapping):
        mapping = cast("Mapping[object, Any]", value)
        return {_snake(str(k)): v for k, v in mapping.items()}
    if attrs.has(type(value)):
        instance = cast("attrs.AttrsInstance", value)
        names = [field.name for field in attrs.fields(type(instance))]
        found = {_snake(name): getattr(instance, name) for name in names}
        extra: object = getattr(instance, "extra", None)  # fields the model does not name
        if isinstance(extra, Mapping):
            extras = cast("Mapping[object, Any]", extra)
            for key, item in extras.items():
                found.setdefault(_snake(str(key)), item)
        return found
    return None


def _canonical(value: object, loose: bool) -> object:
    """A hashable, typed form of a JSON-like or model value (see the module docstring)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, enum.Enum):
        return _canonical(value.value, loose)
    if isinstance(value, (int, float, decimal.Decimal)):
        return ("n", _number(decimal.Decimal(str(value))))
    if isinstance(value, dt.datetime):
        return ("t", _instant(value))
    if isinstance(value, dt.date):
        return ("d", value.isoformat())
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return ("n", _number(decimal.Decimal(text)))
        if _INSTANT.match(text):
            try:
                return ("t", _instant(dt.datetime.fromisoformat(text.replace("Z", "+00:00"))))
            except ValueError:
                pass
        elif _DAY.fullmatch(text):
            return ("d", text)
        return ("s", " ".join(value.split()).casefold() if loose else value)
    if isinstance(value, (list, tuple)):
        return tuple(_canonical(v, loose) for v in cast("list[object]", value))
    fields = fields_of(value)
    if fields is not None:
        return tuple(sorted((k, _canonical(v, loose)) for k, v in fields.items() if v is not None))
    return ("?", repr(value))


def _number(value: decimal.Decimal) -> str:
    if not value.is_finite():
        return str(value)
    return format(value.normalize(), "f")


def _instant(value: dt.datetime) -> str:
    if value.tzinfo is None:
        return value.isoformat()
    return value.astimezone(dt.timezone.utc).isoformat()


Canonical = tuple[dict[str, object], dict[str, object]]
"""A record's or item's fields in their typed form (see the module docstring): exact, then
loose (text casefolded, spacing collapsed). Fields that are null are left out."""


def canonical_fields(value: object) -> Canonical | None:
    """`value`'s fields in their typed form (None when it is not a mapping or a model)."""
    fields = fields_of(value)
    if fields is None:
        return None
    exact: dict[str, object] = {}
    loose: dict[str, object] = {}
    for name, item in fields.items():
        if item is not None:
            exact[name] = _canonical(item, loose=False)
            loose[name] = _canonical(item, loose=True)
    return exact, loose


def projection_digests(fields: Canonical, names: tuple[str, ...]) -> tuple[str, str] | None:
    """(exact, loose) digests of `fields` restricted to `names` (None when one is missing)."""
    exact_fields, loose_fields = fields
    exact: list[object] = []
    loose: list[object] = []
    for name in names:
        if name not in exact_fields:
            return None
        exact.append(exact_fields[name])
        loose.append(loose_fields[name])
    return _hash(exact), _hash(loose)


def _hash(parts: list[object]) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


@attrs.define
class _Group:
    """The items held for the lookup that sent one content (`digest`)."""

    keys: list[str]  # their identities, in input order
    matched: list[str | None] = attrs.field(factory=lambda: list[str | None]())  # record ids
    nearly: list[str | None] = attrs.field(factory=lambda: list[str | None]())


class ContentIndex:
    """The held items, by the fields each sent; `see(record)` counts the records that match."""

    def __init__(self) -> None:
        # field names sent -> exact digest -> content digest; the same for loose digests
        self._exact: dict[tuple[str, ...], dict[str, str]] = {}
        self._loose: dict[tuple[str, ...], dict[str, str]] = {}
        self._groups: dict[str, _Group] = {}

    def add(self, key: str, digest: str, content: object) -> bool:
        """Hold the item `key` whose content (digest `digest`) is `content`; False when its
        content is not a mapping of fields (it cannot be matched)."""
        group = self._groups.get(digest)
        if group is not None:
            group.keys.append(key)
            return True
        fields = canonical_fields(content)
        if fields is None:
            return False
        names = tuple(sorted(fields[0]))
        digests = projection_digests(fields, names)
        if digests is None or not names:
            return False
        self._exact.setdefault(names, {})[digests[0]] = digest
        self._loose.setdefault(names, {})[digests[1]] = digest
        self._groups[digest] = _Group([key])
        return True

    def see(self, fields: Canonical, record_id: str | None) -> bool:
        """Count a record (its `canonical_fields`) for every held content it matches; True
        when it matched one."""
        hit = False
        for names, exact in self._exact.items():
            digests = projection_digests(fields, names)
            if digests is None:
                continue
            digest = exact.get(digests[0])
            if digest is not None:
                self._groups[digest].matched.append(record_id)
                hit = True
                continue
            digest = self._loose[names].get(digests[1])
            if digest is not None:
                self._groups[digest].nearly.append(record_id)
        return hit

    def complete(self, created: dict[str, int]) -> bool:
        """Every held content has as many matches as it can use (`created`: digest -> items of
        that content known to be created), so the rest of the listing cannot change anything."""
        return all(
            len(group.matched) >= created.get(digest, 0) + len(group.keys)
            for digest, group in self._groups.items()
        )

    def digests(self) -> list[str]:
        """The contents held."""
        return list(self._groups)

    def verdicts(self, created: dict[str, int]) -> dict[str, tuple[str, str | None]]:
        """Held key -> ("found", record id) | ("nearly", record id) | ("absent", None).

        Of the `n` held items of a content, the first `m - s` (records matching, minus items of
        that content known to be created) are found; the others are nearly matched when some
        record nearly matches that content, else absent.
        """
        verdicts: dict[str, tuple[str, str | None]] = {}
        for digest, group in self._groups.items():
            known = created.get(digest, 0)
            present = max(0, min(len(group.keys), len(group.matched) - known))
            for n, key in enumerate(group.keys):
                if n < present:
                    verdicts[key] = ("found", group.matched[known + n])
                elif group.nearly:
                    verdicts[key] = ("nearly", group.nearly[0])
                else:
                    verdicts[key] = ("absent", None)
        return verdicts
