"""`Model`: the base of every generated API model, and its wire form both ways.

`to_dict()` gives what the API would send or accept: its field names (camelCase), JSON-ready
values (a `Decimal` as its string, a `datetime` as RFC 3339 text, nested models as objects),
the `extra` fields the spec does not list, and no key for a field that is unset (`None`). It is
what a web handler returns (FastAPI, Flask's `jsonify`) and what `json.dumps` takes.
`from_dict(data)` builds a model from such a mapping and checks it as an API answer is checked,
so `Model.from_dict(model.to_dict()) == model`.

The converter is imported on first use, not with the models: `import finalpos_sync` stays cheap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["Model"]

_M = TypeVar("_M", bound="Model")


class Model:
    """Base of the API models: `to_dict()`, `to_json()` and `Model.from_dict(data)`."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """The model as the API's JSON object: wire names, JSON-ready values, unset fields left out.

        `extra` fields are included. Raises `FieldError` (a `TypeError`) naming a field that
        holds a value of the wrong type, or a required field set to `None`.
        """
        from ._converter import unstructure  # on first use: keeps `import` of the models light

        data: dict[str, Any] = unstructure(self)
        return data

    def to_json(self, *, indent: int | None = None) -> str:
        """`to_dict()` as JSON text (compact, or indented by `indent` spaces).

        Compact text goes through the fast codec (orjson when installed).
        """
        if indent is not None:
            return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)
        from ._codec import dumps

        return dumps(self.to_dict()).decode("utf-8")

    @classmethod
    def from_dict(cls: type[_M], data: Mapping[str, Any]) -> _M:
        """A model built from the API's JSON object (camelCase keys), checked as an answer is.

        Unknown keys go to `extra`. Raises `FieldError` (a `TypeError`) naming the field that
        is missing or does not fit, e.g. `billing.city: expected string, got number`.
        """
        from ._converter import structure

        return structure(dict(data), cls)
