"""The CLI's view of the API: the library's resources and methods, from the shipped table.

Every name comes from `finalpos_async.operations` (written by the generator with the typed
resources): a CLI resource is a client attribute (`customers`, `custom_tables`, also spelled
`custom-tables`) and a command runs one of its methods (`custom_tables.list_rows`). The spec is
read only for the JSON schemas of bodies and responses (the row checks and CSV columns), inlined
by `finalpos_async.spec.component`: every `$ref` and `allOf` in them is already resolved.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import attrs

from .._method_info import MethodInfo
from ..operations import OPERATIONS
from ..spec import component

__all__ = [
    "Choice",
    "MethodError",
    "Resource",
    "body_arguments",
    "find_resource",
    "load_resources",
    "lookup",
]

# Names earlier CLI versions used (spec path segments), kept working with a note naming the
# new one. An entry maps an old name to the resource and, where it picked one of several
# methods, the method for each command kind.
_RENAMED: dict[str, tuple[str, Mapping[str, str]]] = {
    "custom-table-rows": (
        "custom_tables",
        {"create": "create_row", "list": "list_rows", "retrieve": "retrieve_row"},
    ),
    "custom-table-fields": ("custom_tables", {"list": "list_fields"}),
    "custom-table-values": ("custom_tables", {"list": "list_values"}),
    **{
        old: (new, {})
        for old, new in (
            ("account", "accounts"),
            ("attachment", "attachments"),
            ("category", "categories"),
            ("customer", "customers"),
            ("order", "orders"),
            ("outlet", "outlets"),
            ("product", "products"),
            ("refund", "refunds"),
            ("role", "roles"),
            ("session", "sessions"),
            ("station", "stations"),
            ("transaction", "transactions"),
            ("variant", "variants"),
            ("zapier-trigger", "zapier_triggers"),
        )
    },
}


class MethodError(ValueError):
    """The method asked for does not exist for this command; the message lists the valid ones."""


@attrs.frozen
class Resource:
    """One client attribute (`client.customers`) and its operations."""

    name: str
    operations: tuple[MethodInfo, ...] = attrs.field(eq=False, repr=False)

    def methods(self, kind: str) -> tuple[MethodInfo, ...]:
        """The operations of one kind ("create", "list", "retrieve", "delete")."""
        return tuple(op for op in self.operations if op.kind == kind)

    def default(self, kind: str) -> MethodInfo | None:
        """The method a command uses when none is named: the one called `kind`, or the only one."""
        found = self.methods(kind)
        for op in found:
            if op.name == kind:
                return op
        return found[0] if len(found) == 1 else None

    def pick(self, kind: str, method: str | None) -> MethodInfo:
        """The operation `method` (default: `default(kind)`); `MethodError` lists the choices."""
        found = self.methods(kind)
        wanted = method.replace("-", "_") if method is not None else None
        op = (
            self.default(kind)
            if wanted is None
            else next((o for o in found if o.name == wanted), None)
        )
        if op is not None:
            return op
        choices = ", ".join(f"{self.name}.{o.name}" for o in found)
        if not found:
            raise MethodError(f"{self.name} has no {kind}")
        if wanted is None:
            raise MethodError(f"{self.name} has several {kind} methods; choose one of: {choices}")
        raise MethodError(f"{self.name} has no {kind} method {wanted!r}; choose one of: {choices}")

    def related(self, op: MethodInfo, kind: str) -> MethodInfo | None:
        """The `kind` operation on the same records as `op` (`create_row` -> `list_rows`)."""
        return next((o for o in self.methods(kind) if o.collection == op.collection), None)

    @property
    def create_schema(self) -> Mapping[str, Any] | None:
        """The JSON schema of the default create's body (None when there is none)."""
        op = self.default("create")
        return component(op.body_schema) if op is not None and op.body_schema else None


@attrs.frozen
class Choice:
    """What a RESOURCE argument named: the resource, the method (if named) and any rename note."""

    resource: Resource
    method: str | None
    renamed: Mapping[str, str] = attrs.field(factory=lambda: {})
    old_name: str | None = None  # the deprecated name used, if one was

    def note(self, op: MethodInfo) -> str | None:
        """For a deprecated name: what to call it now."""
        if self.old_name is None:
            return None
        new = self.resource.name if not self.renamed else op.qualified_name
        return f"the resource name {self.old_name!r} is deprecated; use {new} (the library's name)"

    def pick(self, kind: str) -> MethodInfo:
        """The operation this command runs."""
        if self.renamed and self.method is None and kind not in self.renamed:
            choices = ", ".join(f"{self.resource.name}.{m}" for m in self.renamed.values())
            raise MethodError(f"no {kind} for this resource; it means: {choices}")
        return self.resource.pick(kind, self.method or self.renamed.get(kind))


@functools.lru_cache(maxsize=1)
def load_resources() -> dict[str, Resource]:
    """Every resource of the client, keyed by its attribute name, in name order."""
    grouped: dict[str, list[MethodInfo]] = {}
    for op in OPERATIONS:
        grouped.setdefault(op.resource, []).append(op)
    return {name: Resource(name, tuple(ops)) for name, ops in sorted(grouped.items())}


def lookup(text: str) -> Choice | None:
    """`customers`, `custom-tables`, `custom_tables.list_rows` (or an old name) -> a Choice."""
    name, _, method = text.strip().partition(".")
    table = load_resources()
    found = table.get(name.lower().replace("-", "_"))
    if found is not None:
        return Choice(found, method or None)
    old = _RENAMED.get(name.lower().replace("_", "-"))
    if old is None or old[0] not in table:
        return None
    new, methods = old
    return Choice(table[new], method or None, methods, name)


def find_resource(name: str) -> Resource | None:
    """The resource called `name` (`custom_tables`, `custom-tables`, or an old name)."""
    choice = lookup(name)
    return choice.resource if choice is not None else None


# id(operation) -> (operation, its wire names -> keyword names): worked out once, not per row.
_wire_names: dict[int, tuple[MethodInfo, dict[str, str]]] = {}


def body_arguments(
    op: MethodInfo, body: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A wire (camelCase) body as the typed method's keyword arguments, and its `extra_body`.

    Fields the operation does not list (a customer's custom-table fields) go in `extra_body`.
    """
    known = _wire_names.get(id(op))
    if known is None or known[0] is not op:
        names = {p.wire_name: p.python_name for p in (*op.path_params, *op.body_fields)}
        _wire_names[id(op)] = (op, names)  # holding `op` keeps its id its own
    else:
        names = known[1]
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for wire, value in body.items():
        python = names.get(wire)
        if python is None:
            extra[wire] = value
        else:
            kwargs[python] = value
    return kwargs, extra
