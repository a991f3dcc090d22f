"""Reading import files (CSV or JSON Lines) into request bodies checked against the spec.

A CSV header may be camelCase or snake_case and name nested fields with dots (`billing.city`,
`billing.post_code`). Cells are text, so each one is converted to the type the spec gives its
field: numbers, booleans (`true/false/yes/no/1/0`), arrays (`vip;loyal`, or a JSON array),
objects (a JSON object). JSON Lines records are taken as they are, with the same header rules and
the same checks (a text value for a typed field is converted the same way: a failed-rows file of a
CSV import holds the CSV's text cells).

The checks are the library's and the sandbox's (`finalpos_async.spec`): exactly what the spec
declares for a field (type, `required`, `enum`, a `format` such as date-time or decimal, a
`pattern`), never a rule guessed from the field's name. A field is missing only when it is not
given: `""` is a value. Reading a file, two things mean "not given" (left out of the body; "is
required" for a required field): null, since the spec allows it in no create body (only updates
take it, to clear a field), so an import never sends one; and a blank CSV cell, read as null,
because CSV has no way to tell an empty value from a missing one and a blank cell in a spreadsheet
almost always means "nothing here". To send an empty string, use JSON Lines.

CSV cells are trimmed of surrounding whitespace before they are checked (`RowParser(trim=True)`,
which `_plan.make_parser` asks for unless `--keep-whitespace`): spreadsheets pad cells, and
`"  ann@example.com "` must be the same customer as `ann@example.com`. A cell that is blank once
trimmed is not given. The record itself (`ParsedRow.raw`, what a failed-rows file keeps) stays as
read: the same trimming applies again when it is imported from there. JSON Lines values are taken
as written (JSON is explicit).

Every problem is reported as `line N, field F: what is wrong`, and a bad row never stops the
reading: the caller decides what to do with it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO, cast

import attrs

from .._constants import IMPORT_MAX_FIELD_BYTES
from ..spec import format_problem
from ._bounded import CHUNK, Oversized, csv_records, lines

__all__ = ["ParsedRow", "RowError", "RowParser", "oversized", "read_records", "sniff_format"]

_TRUE = frozenset({"true", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "off"})
# Column plans and schema nodes a parser keeps (a JSON Lines file may name any number of fields).
_PLANS_CAP = 4096
# `RowParser._plan` for a server-set column (dropped) and a malformed column name.
_DROPPED: tuple[str, ...] = ("<dropped>",)
_MALFORMED: tuple[str, ...] = ("<malformed>",)
# A failed-rows file (FILE.failed.jsonl) holds {"line", "row", "error"} records; importing it
# again takes each record's "row".
_FAILED_KEYS = frozenset({"row", "error"})


@attrs.frozen
class RowError:
    """One problem with one row."""

    line: int
    field: str
    message: str
    text: str | None = attrs.field(default=None, kw_only=True, eq=False)
    """The raw line, when the record could not be read at all (kept so it can be fixed)."""

    def __str__(self) -> str:
        where = f"line {self.line}"
        return (
            f"{where}, field {self.field}: {self.message}"
            if self.field
            else f"{where}: {self.message}"
        )


@attrs.frozen(kw_only=True)
class ParsedRow:
    """A row read from the file: its body when valid, its errors otherwise, and the raw record."""

    line: int
    raw: Mapping[str, Any]
    body: dict[str, Any] | None
    errors: tuple[RowError, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the row can be sent."""
        return not self.errors


def sniff_format(path: Path) -> str:
    """ "csv" or "jsonl", from the file name (`.jsonl`, `.ndjson`, `.json` mean JSON Lines)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "csv"


def read_records(
    stream: TextIO, fmt: str, *, max_field_bytes: int = IMPORT_MAX_FIELD_BYTES
) -> Iterator[tuple[int, Mapping[str, Any] | RowError]]:
    """Yield (line number, record) for every record of the file, lazily.

    A record that cannot even be read (bad JSON, a CSV row with more cells than the header, a CSV
    cell or a JSON Lines line over `max_field_bytes` bytes) comes out as a `RowError` in place of
    the record. The file is read in bounded pieces (`_bounded`): a field over the cap is read to
    its end without being held, so memory holds at most one row of cells within the cap.
    """
    if fmt == "jsonl":
        seen_record = False
        for number, text in lines(stream, max_field_bytes):
            if isinstance(text, Oversized):
                message = oversized("the line", max_field_bytes)
                yield number, RowError(number, "", message)
                continue
            if not text.strip():
                continue
            if not seen_record and text.lstrip().startswith("["):
                raise ValueError(
                    f"line {number}: the file holds a JSON array; import reads JSON Lines (one "
                    "object per line), e.g. convert it with: jq -c '.[]' FILE > FILE.jsonl"
                )
            seen_record = True
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                message = f"not valid JSON ({exc.msg} at column {exc.colno})"
                yield number, RowError(number, "", message, text=text.rstrip("\r\n"))
                continue
            if not isinstance(record, dict):
                yield (
                    number,
                    RowError(number, "", f"expected a JSON object, got {type(record).__name__}"),
                )
                continue
            fields = cast("dict[str, Any]", record)  # a JSON object: string keys
            if fields.keys() >= _FAILED_KEYS and isinstance(fields["row"], dict):
                fields = cast("dict[str, Any]", fields["row"])
            yield number, fields
        return
    first = stream.readline(CHUNK)
    if not first:
        return
    # Spreadsheets in many locales save CSV with ";" (or tabs): the header line tells which.
    delimiter = max((",", ";", "\t"), key=first.count)
    records = csv_records(stream, delimiter, max_field_bytes, start=first, header=True)
    _, names, _ = next(records)
    if isinstance(names, Oversized):
        raise ValueError(
            f"line 1: {oversized(f'header cell {names.column}', max_field_bytes)} (is line 1 "
            "the header?)"
        )
    header = [name.lstrip("\ufeff").strip() for name in names]  # header names: always trimmed
    for start, cells, count in records:
        if isinstance(cells, Oversized):
            name = header[cells.column - 1] if cells.column <= len(header) else ""
            what = f"column {cells.column}"
            yield start, RowError(start, name, oversized(what, max_field_bytes))
            continue
        if not any(cell.strip() for cell in cells):
            continue
        if count > len(header):
            yield (
                start,
                RowError(start, "", f"{count} cells but the header has {len(header)} columns"),
            )
            continue
        # a blank cell is null ("not given"), not "": see the module docstring
        yield (
            start,
            {
                name: cell if cell.strip() else None
                for name, cell in zip(header, cells, strict=False)
            },
        )


def oversized(what: str, limit: int) -> str:
    """Why a field over --max-field-bytes is an invalid row, and the two ways on."""
    return (
        f"{what} is larger than --max-field-bytes ({limit:,} bytes) and was not read: shorten "
        "it, or import with a larger --max-field-bytes"
    )


class RowParser:
    """Turns raw records into request bodies for one create schema."""

    def __init__(
        self,
        schema: Mapping[str, Any],
        *,
        schema_name: str = "body",
        server_fields: frozenset[str] = frozenset(),
        trim: bool = False,
    ) -> None:
        self._schema = schema
        # CSV cells: trim surrounding whitespace of every top-level text value (module docstring).
        self._trim = trim
        self._schema_name = schema_name
        # Fields the server sets (id, createdAt, ...): an export re-imported carries them as
        # columns; they are dropped instead of being sent and refused.
        self._server_fields = server_fields - _properties(schema).keys()
        self._columns: dict[str, tuple[str, ...]] = {}
        self._plans: dict[object, tuple[str, ...]] = {}  # column -> `_plan`
        self._nodes: dict[int, _Node] = {}  # id(schema) -> the schema worked out (`_node`)
        self.unknown_columns: set[str] = set()
        self.dropped_columns: set[str] = set()

    def parse(self, line: int, raw: Mapping[str, Any]) -> ParsedRow:
        """Check and convert one record; never raises for bad data."""
        errors: list[RowError] = []
        body: dict[str, Any] = {}
        for column, value in raw.items():
            if self._trim and isinstance(value, str):
                # Unicode whitespace (str.strip), not only ASCII: the padding comes from
                # spreadsheets and text pasted from web pages, where a no-break space (U+00A0),
                # a narrow one (U+202F) or an ideographic one (U+3000) is as common as a plain
                # space, and none of them is ever meant at the edge of an email or a name. It is
                # also what `read_records` already calls blank. Zero-width characters (U+200B,
                # U+FEFF) are not whitespace to Python and are kept.
                value = value.strip() or None
            if value is None:  # not given: a blank CSV cell, or null
                continue
            path = self._plans.get(column)
            if path is None:
                path = self._plan(column)
            if path is _DROPPED:
                self.dropped_columns.add(str(column))
                continue
            if path is _MALFORMED:
                errors.append(RowError(line, str(column), "malformed column name"))
                continue
            if len(path) == 1:
                if path[0] in body:
                    errors.append(RowError(line, path[0], "given twice"))
                else:
                    body[path[0]] = value
                continue
            target = body
            for part in path[:-1]:
                existing: Any = target.setdefault(part, {})
                if not isinstance(existing, dict):
                    errors.append(RowError(line, ".".join(path), f"{part!r} is given twice"))
                    break
                target = cast("dict[str, Any]", existing)
            else:
                if path[-1] in target:
                    errors.append(RowError(line, ".".join(path), "given twice"))
                else:
                    target[path[-1]] = value
        if errors:
            return ParsedRow(line=line, raw=raw, body=None, errors=tuple(errors))
        top = self._node(self._schema)
        converted = self._convert_object(body, top, "", line, errors, top=True)
        if errors:
            return ParsedRow(line=line, raw=raw, body=None, errors=tuple(errors))
        return ParsedRow(line=line, raw=raw, body=converted)

    def _plan(self, column: object) -> tuple[str, ...]:
        """What a column's values are: a body path, or `_DROPPED` / `_MALFORMED` (worked out
        once per column name, not per row)."""
        path = self.column_path(str(column))
        if path and path[0] in self._server_fields:
            plan = _DROPPED
        elif not path or any(not part for part in path):
            plan = _MALFORMED
        else:
            plan = path
        if len(self._plans) < _PLANS_CAP:  # JSON Lines may name any number of fields
            self._plans[column] = plan
        return plan

    # -- names -----------------------------------------------------------------------------------

    def column_path(self, column: str) -> tuple[str, ...]:
        """`billing.post_code` -> ("billing", "postCode"), matched against the schema's names."""
        cached = self._columns.get(column)
        if cached is not None:
            return cached
        parts: list[str] = []
        schema: Mapping[str, Any] | None = self._schema
        for segment in column.strip().split("."):
            props: Mapping[str, Any] = _properties(schema) if schema is not None else {}
            name = _match_property(segment.strip(), props)
            if name is None:
                name = _camel(segment.strip())
                if not parts and name not in self._server_fields:
                    self.unknown_columns.add(column)
                schema = None
            else:
                schema = props[name]
            parts.append(name)
        path = tuple(parts)
        self._columns[column] = path
        return path

    # -- values ----------------------------------------------------------------------------------

    def _node(self, schema: Mapping[str, Any]) -> _Node:
        """`schema` worked out once (resolved, its type, what to check), not on every row."""
        node = self._nodes.get(id(schema))
        if node is None:
            node = _Node.of(schema)
            if len(self._nodes) < _PLANS_CAP:
                self._nodes[id(schema)] = node  # the node holds `schema`: its id stays its own
        return node

    def _child(self, node: _Node, name: str, schema: Mapping[str, Any]) -> _Node:
        """The node of `node`'s field (or, `name` "[]", element) `name` whose schema is
        `schema`, kept on `node` once made."""
        child = node.children.get(name)
        if child is None:
            child = node.children[name] = self._node(schema)
        return child

    def _convert(
        self, value: Any, node: _Node, field: str, line: int, errors: list[RowError]
    ) -> Any:
        schema = node.schema
        kind = node.kind
        if isinstance(value, str) and kind not in (None, "string"):
            value = value.strip()
        result: Any
        if kind == "string":
            if not isinstance(value, str):
                errors.append(RowError(line, field, f"must be text, got {_show(value)}"))
                return None
            result = value
        elif kind == "integer":
            result = _to_int(value)
            if result is None:
                errors.append(RowError(line, field, f"must be a whole number, got {_show(value)}"))
        elif kind == "number":
            result = _to_number(value)
            if result is None:
                errors.append(RowError(line, field, f"must be a number, got {_show(value)}"))
        elif kind == "boolean":
            result = _to_bool(value)
            if result is None:
                errors.append(
                    RowError(
                        line, field, f"must be true or false (yes/no, 1/0), got {_show(value)}"
                    )
                )
        elif kind == "array":
            return self._convert_array(value, node, field, line, errors)
        elif kind == "object":
            if isinstance(value, str):
                value = _json_cell(value, dict, field, line, errors, "a JSON object")
                if value is None:
                    return None
            if not isinstance(value, dict):
                errors.append(RowError(line, field, f"must be an object, got {_show(value)}"))
                return None
            fields = cast("dict[str, Any]", value)  # a JSON object: string keys
            return self._convert_object(fields, node, field, line, errors, top=False)
        else:
            result = value  # no type in the spec: sent as given
        if result is not None and node.enum and result not in schema["enum"]:
            allowed = ", ".join(repr(v) for v in schema["enum"])
            errors.append(RowError(line, field, f"{_show(result)} is not one of {allowed}"))
        if node.formatted:
            wanted = format_problem(result, schema)
            if wanted is not None:
                errors.append(RowError(line, field, f"must be {wanted}, got {_show(result)}"))
        return result

    def _convert_array(
        self, value: Any, node: _Node, field: str, line: int, errors: list[RowError]
    ) -> Any:
        item_schema = node.items
        item = self._child(node, "[]", item_schema)
        if isinstance(value, str):
            if value.startswith("["):
                value = _json_cell(value, list, field, line, errors, "a JSON array")
                if value is None:
                    return None
            elif item_schema.get("type") in ("object", None) and "properties" in item_schema:
                errors.append(
                    RowError(line, field, 'must be a JSON array of objects, e.g. [{"key": "k"}]')
                )
                return None
            else:
                value = [part.strip() for part in value.split(";") if part.strip()]
        if not isinstance(value, list):
            errors.append(RowError(line, field, f"must be a list, got {_show(value)}"))
            return None
        elements = cast("list[object]", value)
        return [
            self._convert(element, item, f"{field}[{i}]", line, errors)
            for i, element in enumerate(elements)
        ]

    def _convert_object(
        self,
        value: Mapping[str, Any],
        node: _Node,
        field: str,
        line: int,
        errors: list[RowError],
        *,
        top: bool,
    ) -> dict[str, Any]:
        props = node.props
        out: dict[str, Any] = {}
        for key, element in value.items():
            if element is None:  # not given, as at the top level
                continue
            name = key if top else (_match_property(key, props) or key)
            path = f"{field}.{name}" if field else name
            if name in props:
                child = self._child(node, name, props[name])
                out[name] = self._convert(element, child, path, line, errors)
            elif top or not props:
                # Unknown top-level fields are sent as given: customer DTOs follow the company's
                # custom tables, so the spec cannot list every field.
                out[name] = element
            else:
                known = ", ".join(sorted(props))
                errors.append(RowError(line, path, f"unknown field (known: {known})"))
        for name in node.required:
            if name not in out:
                path = f"{field}.{name}" if field else name
                errors.append(RowError(line, path, "is required"))
        return out


@attrs.frozen
class _Node:
    """A field's schema as `RowParser._convert` uses it, worked out once per schema."""

    schema: Mapping[str, Any]  # kept: the parser's cache is keyed by its id
    kind: Any  # its "type" ("object" when it only lists properties)
    enum: bool  # it lists the allowed values
    formatted: bool  # it has a `format` or a `pattern` (`format_problem` has a say)
    props: Mapping[str, Any]
    required: tuple[str, ...]
    items: Mapping[str, Any]  # an array's element schema, resolved
    # The nodes of its fields (and "[]": its elements), made as they are met.
    children: dict[str, _Node] = attrs.field(factory=lambda: {}, eq=False)

    @classmethod
    def of(cls, schema: Mapping[str, Any]) -> _Node:
        """The node of `schema` (the spec module hands out schemas with `$ref`s resolved)."""
        kind = schema.get("type")
        if kind is None and "properties" in schema:
            kind = "object"
        return cls(
            schema=schema,
            kind=kind,
            enum="enum" in schema,
            formatted="format" in schema or "pattern" in schema,
            props=_properties(schema),
            required=tuple(schema.get("required", ())),
            items=schema.get("items", {}),
        )


def _properties(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    props: Mapping[str, Any] = schema.get("properties", {})
    return props


def _match_property(segment: str, props: Mapping[str, Any]) -> str | None:
    if segment in props:
        return segment
    folded = segment.replace("_", "").replace("-", "").lower()
    for name in props:
        if name.lower() == folded:
            return name
    return None


def _camel(segment: str) -> str:
    head, *rest = re.split(r"[_\-]+", segment)
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _json_cell(
    text: str, kind: type, field: str, line: int, errors: list[RowError], what: str
) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        errors.append(RowError(line, field, f"must be {what}: {exc.msg} at column {exc.colno}"))
        return None
    if not isinstance(value, kind):
        errors.append(RowError(line, field, f"must be {what}, got {_show(value)}"))
        return None
    return value


def _to_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    return None


def _to_number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        as_int = _to_int(value)
        if as_int is not None:
            return as_int
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _to_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return None


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
