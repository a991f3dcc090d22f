"""A run's inputs and how each one is named: its identity, its content digest, its key.

Each item has one idempotency key derived from the job id, the item's identity and its content:
every attempt and every re-run of the same job sends the same key.
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import Any, cast

import attrs

__all__ = [
    "ContentIdentities",
    "Items",
    "KeySpec",
    "content_digest",
    "idempotency_key_for",
    "identity_rule",
    "item_idempotency_key",
    "read_field",
]

Items = Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]]
"""The inputs of a run: any iterable or async iterable of field mappings, pulled lazily."""

KeySpec = str | Callable[[Any], object] | None
"""An item's identity: None (its content), a field name, or a function of the item."""


class ContentIdentities:
    """Names items by their content: the first of a content is its digest, the n-th repeat
    `digest#n`, so identical items stay distinct and a re-run names them the same way.

    Memory: a set of 64-bit ints for the contents seen (a 64-bit prefix is plenty to tell the
    contents of one input apart), plus a counter that holds only the repeated ones.
    """

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._repeats: collections.Counter[str] = collections.Counter()

    def name(self, digest: str) -> str:
        """The identity of the next item whose content has this `content_digest`."""
        short = int(digest[:16], 16)
        if short in self._seen:
            self._repeats[digest] += 1
            return f"{digest}#{self._repeats[digest]}"
        self._seen.add(short)
        return digest


def content_digest(content: object) -> str:
    """A hash of an item's content (canonical JSON, keys sorted): 32 hex digits."""
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def idempotency_key_for(job_id: str, key: str, content: object) -> str:
    """The idempotency key of one item: stable for the same job, identity and content.

    Content is part of it so that an item fixed between two runs (after a 400) is not answered
    with the server's replay of the first, refused attempt.
    """
    return item_idempotency_key(job_id, key, content_digest(content))


def item_idempotency_key(job_id: str, key: str, digest: str) -> str:
    """`idempotency_key_for` from the content's digest (the engine has it already)."""
    hashed = hashlib.sha256(f"{job_id}\x00{key}\x00{digest}".encode()).hexdigest()
    return f"bulk-{hashed[:40]}"


def identity_rule(key: KeySpec) -> str:
    """How items are identified, as the journal records it (`content`, `key=email`)."""
    if key is None:
        return "content"
    if isinstance(key, str):
        return f"key={key}"
    return f"key={getattr(key, '__qualname__', type(key).__name__)}"


def read_field(spec: KeySpec, item: Any, index: int, name: str) -> Any:
    """Apply a key/content spec to an item (None is the item itself).

    A field name is read as a mapping key, else as an attribute (camelCase or snake_case), so
    the same spec reads an input row and a listed record.
    """
    if spec is None:
        return item
    if callable(spec):
        return spec(item)
    if isinstance(item, Mapping):
        fields = cast("Mapping[str, Any]", item)
        if spec in fields:
            return fields[spec]
        raise KeyError(f"bulk item {index} has no field {spec!r} (the {name}= field)")
    for attr in (spec, _snake(spec)):
        if hasattr(item, attr):
            return getattr(item, attr)
    raise KeyError(f"bulk item {index} has no field {spec!r} (the {name}= field)")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _canonical(value: object) -> object:
    """JSON fallback for item values that are not plain JSON (models, decimals, dates)."""
    if attrs.has(type(value)):
        # `attrs.has` narrows the class, not the instance: the instance is of that class.
        return attrs.asdict(cast("attrs.AttrsInstance", value))
    return str(value)
