"""`MethodInfo` and `ParamInfo`: one row of the shipped operation table
(`finalpos_async.operations`), an SDK method and the spec operation behind it.

The table is generated from the spec and `scripts/sdk_methods.py`; the CLI and the sandbox read
it instead of interpreting the spec's paths themselves.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = ["Kind", "MethodInfo", "ParamInfo"]

Kind = Literal["create", "retrieve", "update", "delete", "list"]
"""What an operation does to its collection; the method name's first word (`list_rows` -> list)."""


@attrs.frozen
class ParamInfo:
    """One path or query parameter, or one field of a request body."""

    python_name: str
    """The argument's name in the SDK (`first_name`)."""
    wire_name: str
    """The name on the wire (`firstName`)."""
    required: bool
    json_type: str = "string"
    """The spec's JSON type of the value (`string`, `integer`, `number`, `boolean`, `array`...)."""


@attrs.frozen
class MethodInfo:
    """One SDK method and the spec operation behind it."""

    resource: str
    """The client attribute (`customers`, `custom_tables`)."""
    name: str
    """The method name (`create`, `list_rows`)."""
    kind: Kind
    operation_id: str
    http_method: str
    """Upper case (`POST`)."""
    path: str
    """The path template (`/v1/api/customer/{id}`)."""
    path_params: tuple[ParamInfo, ...]
    query_params: tuple[ParamInfo, ...]
    """Without `skip` and `limit`, which every list takes (see `paginated`)."""
    body_fields: tuple[ParamInfo, ...]
    body_schema: str | None
    """The spec component of the request body (`CustomerCreateDto`)."""
    response_schema: str | None
    """The spec component answered (for a list, the item's); None when undocumented."""
    body_model: str | None
    """The class in `finalpos_async.types` for the body (`CustomerCreate`)."""
    response_model: str | None
    """The class in `finalpos_async.types` answered (for a list, the item's)."""
    success_status: int
    collection: str
    """The store the records live in: the same for `POST /customer` and `GET /customers`."""

    @property
    def paginated(self) -> bool:
        """Whether the method walks skip/limit pages (every `list` does)."""
        return self.kind == "list"

    @property
    def qualified_name(self) -> str:
        """`customers.create`: how messages name the method."""
        return f"{self.resource}.{self.name}"
