"""Import rows: header names, cell conversion and error messages naming line and field."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from finalpos_async.cli._input import Header
from finalpos_async.cli._options import ImportOptions
from finalpos_async.cli._plan import make_parser
from finalpos_async.cli._rows import RowError, RowParser, read_records, sniff_format
from finalpos_async.cli._spec import find_resource, load_resources


def parser(resource: str) -> RowParser:
    found = find_resource(resource)
    assert found is not None
    assert found.create_schema is not None
    return RowParser(found.create_schema)


def parse(resource: str, raw: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    row = parser(resource).parse(7, raw)
    return row.body, [str(e) for e in row.errors]


def test_every_resource_with_a_create_is_importable() -> None:
    importable = {r.name for r in load_resources().values() if r.create_schema is not None}
    assert {"customers", "products", "outlets", "categories", "variants", "orders"} <= importable
    assert find_resource("customer") is find_resource("customers")
    assert find_resource("zapier_triggers") is not None


def test_snake_case_camel_case_and_dotted_headers_build_nested_camel_case_bodies() -> None:
    body, errors = parse(
        "customers",
        {
            "email": "a@example.com",
            "first_name": "Ada",
            "LastName": "L",
            "billing.post_code": "N1",
            "billing.city": "London",
            "shipping.address1": "1 Road",
        },
    )
    assert errors == []
    assert body == {
        "email": "a@example.com",
        "firstName": "Ada",
        "lastName": "L",
        "billing": {"postCode": "N1", "city": "London"},
        "shipping": {"address1": "1 Road"},
    }


def test_cells_are_converted_to_the_spec_types() -> None:
    body, errors = parse(
        "variants",
        {"product_id": "p1", "manage_stock": "yes", "price": "2.50", "images": "a.png; b.png"},
    )
    assert errors == []
    assert body == {
        "productId": "p1",
        "manageStock": True,
        "price": 2.5,
        "images": ["a.png", "b.png"],
    }


def test_blank_csv_cells_are_not_given_and_left_out() -> None:
    text = "email,firstName,lastName,phone,tags\na@example.com,A,B,, \n"
    ((line, record),) = list(read_records(io.StringIO(text), "csv"))
    assert record == {
        "email": "a@example.com",
        "firstName": "A",
        "lastName": "B",
        "phone": None,
        "tags": None,
    }
    row = parser("customers").parse(line, record)
    assert row.errors == ()
    assert row.body == {"email": "a@example.com", "firstName": "A", "lastName": "B"}


def test_a_blank_csv_cell_of_a_required_field_is_missing() -> None:
    text = "email,first_name,last_name\na@example.com,,B\n"
    ((line, record),) = list(read_records(io.StringIO(text), "csv"))
    row = parser("customers").parse(line, record)
    assert [str(e) for e in row.errors] == ["line 2, field firstName: is required"]


def test_in_json_lines_an_empty_string_is_a_value_and_null_is_not_given() -> None:
    text = '{"email": "a@x.io", "firstName": "", "lastName": "B", "phone": null, "tags": []}\n'
    ((line, record),) = list(read_records(io.StringIO(text), "jsonl"))
    row = parser("customers").parse(line, record)
    assert row.errors == ()
    assert row.body == {"email": "a@x.io", "firstName": "", "lastName": "B", "tags": []}
    _, errors = parse("customers", {"email": "a@x.io", "firstName": None, "lastName": "B"})
    assert errors == ["line 7, field firstName: is required"]


def test_no_check_is_guessed_from_a_field_name() -> None:
    # the spec gives `email` no format: any text is an email as far as the API says
    body, errors = parse("customers", {"email": "not-an-email", "firstName": "A", "lastName": "B"})
    assert errors == []
    assert body == {"email": "not-an-email", "firstName": "A", "lastName": "B"}


def test_formats_the_spec_declares_are_checked() -> None:
    row = {"email": "a@x.io", "firstName": "A", "lastName": "B"}
    body, errors = parse("customers", {**row, "last_action": "2025-12-07T19:31:48.436+00:00"})
    assert errors == []
    assert body is not None
    assert body["lastAction"] == "2025-12-07T19:31:48.436+00:00"
    _, errors = parse("customers", {**row, "lastAction": "yesterday"})
    assert errors == [
        "line 7, field lastAction: must be an ISO 8601 date-time string such as "
        '2025-12-07T19:31:48Z, got "yesterday"'
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"firstName": "A", "lastName": "B"}, "line 7, field email: is required"),
        (
            {"email": "a@x.io", "firstName": "A", "lastName": "B", "tags": '[7, "vip"]'},
            "line 7, field tags[0]: must be text, got 7",
        ),
        (
            {"email": "a@x.io", "firstName": "A", "lastName": "B", "tags": "[1"},
            "line 7, field tags: must be a JSON array",
        ),
        (
            {"email": "a@x.io", "firstName": "A", "lastName": "B", "billing.zip": "1"},
            "line 7, field billing.zip: unknown field (known: address1,",
        ),
        (
            {"email": "a@x.io", "firstName": "A", "lastName": "B", "metadata": '[{"key": 1}]'},
            "line 7, field metadata[0].key: must be text, got 1",
        ),
        (
            {"email": "a@x.io", "firstName": "A", "lastName": "B", "billing": "[]"},
            "line 7, field billing: must be a JSON object, got []",
        ),
    ],
)
def test_bad_rows_name_the_line_and_field(raw: dict[str, Any], message: str) -> None:
    body, errors = parse("customers", raw)
    assert body is None
    assert any(e.startswith(message) for e in errors), errors


def test_numbers_and_booleans_are_checked() -> None:
    _, errors = parse("variants", {"productId": "p", "manageStock": "maybe", "price": "cheap"})
    assert 'line 7, field manageStock: must be true or false (yes/no, 1/0), got "maybe"' in errors
    assert 'line 7, field price: must be a number, got "cheap"' in errors


def test_unknown_top_level_columns_are_sent_and_noted() -> None:
    p = parser("customers")
    row = p.parse(2, {"email": "a@x.io", "firstName": "A", "lastName": "B", "loyalty_tier": "3"})
    assert row.ok
    assert row.body is not None
    assert row.body["loyaltyTier"] == "3"
    assert p.unknown_columns == {"loyalty_tier"}


def test_csv_records_carry_their_starting_line_number() -> None:
    text = 'email,first_name\na@x.io,"multi\nline"\n\nb@x.io,B\nc@x.io,C,extra\n'
    records = list(read_records(io.StringIO(text), "csv"))
    assert [line for line, _ in records] == [2, 5, 6]
    assert records[0][1] == {"email": "a@x.io", "first_name": "multi\nline"}
    assert isinstance(records[2][1], RowError)
    assert "3 cells but the header has 2 columns" in str(records[2][1])


def test_failed_rows_files_are_read_back_as_their_rows() -> None:
    text = '{"line": 4, "error": "boom", "row": {"email": "a@x.io"}}\n{"email": "b@x.io"}\n'
    records = list(read_records(io.StringIO(text), "jsonl"))
    assert records == [(1, {"email": "a@x.io"}), (2, {"email": "b@x.io"})]


def test_format_follows_the_file_name() -> None:
    assert sniff_format(Path("a.csv")) == "csv"
    assert sniff_format(Path("a.csv.failed.jsonl")) == "jsonl"
    assert sniff_format(Path("a.ndjson")) == "jsonl"


def test_semicolon_and_tab_separated_files_are_recognised_by_their_header() -> None:
    for sep in (";", "\t"):
        text = f"email{sep}first_name\na@x.io{sep}Ada, Countess\n"
        assert list(read_records(io.StringIO(text), "csv")) == [
            (2, {"email": "a@x.io", "first_name": "Ada, Countess"})
        ]


def test_a_json_array_file_is_refused_with_a_way_out() -> None:
    with pytest.raises(ValueError, match=r"JSON array; import reads JSON Lines .* jq"):
        list(read_records(io.StringIO('[{"email": "a@x.io"}]\n'), "jsonl"))


def test_csv_cells_are_trimmed_of_surrounding_whitespace_and_json_values_are_not() -> None:
    found = find_resource("customers")
    assert found is not None
    assert found.create_schema is not None
    padded = {
        "email": "  ann@example.com ",
        "firstName": "\u00a0Ann\t",  # a no-break space, as pasted from a web page
        "lastName": " van der Berg ",  # inner spaces are the value's own
        "phone": " \u3000 ",  # blank once trimmed: not given
        "tags": " vip ; loyal ",
    }
    row = RowParser(found.create_schema, trim=True).parse(2, padded)
    assert row.errors == ()
    assert row.body == {
        "email": "ann@example.com",
        "firstName": "Ann",
        "lastName": "van der Berg",
        "tags": ["vip", "loyal"],
    }
    assert row.raw == padded  # the record itself stays as read (a failed-rows file keeps it)
    kept = RowParser(found.create_schema).parse(2, padded)
    assert kept.body is not None
    assert kept.body["email"] == "  ann@example.com "
    assert kept.body["phone"] == " \u3000 "
    blank = RowParser(found.create_schema, trim=True).parse(3, {**padded, "firstName": "  "})
    assert [str(e) for e in blank.errors] == ["line 3, field firstName: is required"]


def test_csv_header_names_are_trimmed() -> None:
    text = "\ufeff email , first_name\n a@x.io ,A\n"
    ((_, record),) = list(read_records(io.StringIO(text), "csv"))
    assert record == {"email": " a@x.io ", "first_name": "A"}  # cells: trimmed by the parser


def _options(path: Path, *, keep_whitespace: bool = False) -> ImportOptions:
    resource = find_resource("customers")
    assert resource is not None
    return ImportOptions(
        resource=resource,
        file=path,
        fmt=sniff_format(path),
        concurrency=1,
        rate=None,
        journal=None,
        no_journal=True,
        key_field=None,
        failed_file=None,
        validate_only=False,
        drain_timeout=1.0,
        keep_whitespace=keep_whitespace,
    )


def test_the_import_trims_csv_cells_and_the_failed_rows_of_a_csv_import_only(
    tmp_path: Path,
) -> None:
    row = {"email": " a@x.io ", "firstName": "A", "lastName": "B"}
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("email,firstName,lastName\n a@x.io ,A,B\n", encoding="utf-8")
    jsonl_file = tmp_path / "c.jsonl"
    jsonl_file.write_text(json.dumps(row) + "\n", encoding="utf-8")

    def failed_file_of(source: Path) -> Path:
        header = Header(
            resource="customers", source=str(source), journal=None, job_id="j", key=None, target="t"
        )
        path = tmp_path / f"{source.name}.failed.jsonl"
        record = {"line": 2, "outcome": "invalid", "error": "e", "row": row}
        path.write_text(f"{json.dumps(header.to_json())}\n{json.dumps(record)}\n", "utf-8")
        return path

    def email(path: Path, **kwargs: bool) -> object:
        parsed = make_parser(_options(path, **kwargs)).parse(2, row)
        assert parsed.body is not None
        return parsed.body["email"]

    assert email(csv_file) == "a@x.io"
    assert email(failed_file_of(csv_file)) == "a@x.io"  # the CSV's cells, trimmed again
    assert email(jsonl_file) == " a@x.io "  # JSON is explicit
    assert email(failed_file_of(jsonl_file)) == " a@x.io "
    assert email(csv_file, keep_whitespace=True) == " a@x.io "
    assert email(failed_file_of(csv_file), keep_whitespace=True) == " a@x.io "
