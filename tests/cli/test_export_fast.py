"""The export's fast paths: they write what the slow ones write and never a record that fails."""

from __future__ import annotations

import csv
import io
import random
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from record_mutations import ODD_VALUES, model_accepts, mutations
from spec_examples import full_example
from test_export import Collection

from finalpos_async import AsyncFinalPOS, MockTransport, ResponseValidationError, types
from finalpos_async._codec import dumps, dumps_decoded, loads
from finalpos_async.cli import _parquet
from finalpos_async.cli._arrow_page import ArrowPages, _dicts_proof
from finalpos_async.cli._calls import csv_columns, csv_paths, csv_row
from finalpos_async.cli._csv_rows import csv_page_text
from finalpos_async.cli._export import ExportPage, JsonLinesWriter, open_writer, pages_in_order
from finalpos_async.cli._parquet import ParquetWriter
from finalpos_async.operations import OPERATIONS
from finalpos_async.spec import component

CUSTOMER = component("CustomerDto")

# Every list method whose record schema the Arrow fast path takes.
FAST_LISTS = [
    op
    for op in OPERATIONS
    if op.kind == "list"
    and op.response_schema
    and op.response_model
    and ArrowPages.for_schema(component(op.response_schema)) is not None
]


def test_the_fast_path_covers_the_customers_and_other_lists() -> None:
    names = {op.qualified_name for op in FAST_LISTS}
    assert {"customers.list", "products.list"} <= names
    # A schema with a member the models may check and Arrow would not is left to the models.
    assert ArrowPages.for_schema({"properties": {"s": {"type": "string", "enum": ["a"]}}}) is None
    assert ArrowPages.for_schema(None) is None


@pytest.mark.parametrize("op", FAST_LISTS, ids=lambda op: op.qualified_name)
def test_the_fast_path_never_takes_a_page_the_models_refuse(op: Any) -> None:
    assert op.response_schema is not None
    assert op.response_model is not None
    schema = component(op.response_schema)
    cls = getattr(types, op.response_model)
    fast = ArrowPages(schema)
    example = full_example(schema)
    assert model_accepts([example], cls)
    batch = fast.convert([example, example])
    assert batch is not None  # the documented record is taken
    assert batch.num_rows == 2
    assert batch.schema == fast.schema
    taken = 0
    for where, record in mutations(example):
        # with the record alone, a field set to null or removed is a column of nulls only,
        # which the column checks pass over
        for page in ([example, record], [record]):
            if fast.convert(page) is not None:
                taken += 1
                assert model_accepts(page, cls), f"{op.qualified_name}: fast path took {where}"
    assert taken  # some changes are fine (a field removed, another valid value)


def test_an_object_sent_as_a_string_or_a_list_is_left_to_the_models() -> None:
    # pyarrow reads a sequence as an object (`""` and `[]` as one with no fields) when it comes
    # before any dict of its column; the models take only an object
    fast = ArrowPages(CUSTOMER)
    for value in ("", [], [["city", "London"]]):
        assert fast.convert([customer(0, billing=value)]) is None
        assert fast.convert([customer(0, billing=value), customer(1)]) is None
        assert fast.convert([customer(1), customer(0, billing=value)]) is None
        assert fast.convert([customer(0, notes=[value])]) is None
    assert fast.convert([customer(0, billing={}), customer(1)]) is not None  # an empty object


def customer(n: int, **changes: Any) -> dict[str, Any]:
    record = {
        **full_example(CUSTOMER),
        "id": f"c{n}",
        "email": f"c{n}@example.com",
        "totalSpent": f"{n}.25",
        "createdAt": f"2026-01-{n % 28 + 1:02d}T10:00:00.{n % 1000:03d}-05:30",
    }
    for key, value in changes.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    return record


def write_parquet(path: Path, pages: list[list[Any]], *, fast: bool) -> list[bool]:
    """Write `pages` with or without the fast path; which pages the fast path took."""
    arrow = ArrowPages(CUSTOMER)
    writer = ParquetWriter(str(path), CUSTOMER, arrow.convert if fast else None)
    taken = []
    for records in pages:
        converted = arrow.convert(records) if fast else None
        taken.append(converted is not None)
        writer.write_page(ExportPage(records, converted))
    writer.close()
    return taken


def test_parquet_is_the_same_file_by_the_fast_path_and_by_the_models(tmp_path: Path) -> None:
    pages = [
        [customer(n) for n in range(40)],
        [customer(40, shipping=None, metadata=None, notes=None), customer(41, tags=[])],
        # the models take money sent as a JSON number, Arrow's strings do not: the slow path
        [customer(42, totalSpent=12.5), customer(43)],
        [customer(44, lastAction="2026-12-07T07:40:55Z", fromFinal=True)],
    ]
    taken = write_parquet(tmp_path / "fast.parquet", pages, fast=True)
    assert taken == [True, True, False, True]
    write_parquet(tmp_path / "slow.parquet", pages, fast=False)
    fast_table = pq.read_table(tmp_path / "fast.parquet")
    slow_table = pq.read_table(tmp_path / "slow.parquet")
    assert fast_table.schema == slow_table.schema
    assert fast_table.to_pylist() == slow_table.to_pylist()
    assert fast_table.num_rows == 45
    created = fast_table.column("createdAt")[0].as_py()
    assert created.isoformat() == "2026-01-01T15:30:00+00:00"  # -05:30 read as its UTC instant


def test_parquet_row_groups_are_written_in_order_on_a_thread_that_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_parquet, "ROW_GROUP_ROWS", 3)  # a row group every page or so
    pages = [[customer(n) for n in range(start, start + 2)] for start in range(0, 20, 2)]
    write_parquet(tmp_path / "groups.parquet", pages, fast=True)
    assert not [t for t in threading.enumerate() if t.name.startswith("finalpos-parquet")]
    file = pq.ParquetFile(tmp_path / "groups.parquet")
    assert file.metadata.num_row_groups == 5  # 4 rows each: two pages, then the flush
    ids = file.read().column("id").to_pylist()
    assert ids == [f"c{n}" for n in range(20)]


def test_a_failed_parquet_export_ends_its_thread_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A failure after row groups went to the writing thread: the thread ends and the file is
    # closed before it is removed (an open file cannot be removed on Windows), at once rather
    # than whenever the garbage collector gets to the writer.
    monkeypatch.setattr(_parquet, "ROW_GROUP_ROWS", 3)
    output = tmp_path / "out.parquet"
    with (  # noqa: PT012 - the failure comes after pages were written
        pytest.raises(RuntimeError, match="the listing broke"),
        open_writer("parquet", output, CUSTOMER) as writer,
    ):
        for start in range(0, 12, 2):
            writer.write_page(ExportPage([customer(start), customer(start + 1)], None))
        raise RuntimeError("the listing broke")
    assert not [t for t in threading.enumerate() if t.name.startswith("finalpos-parquet")]
    assert list(tmp_path.iterdir()) == []  # neither the output nor its hidden part file


async def test_a_record_the_fast_path_refuses_stops_the_export_naming_it() -> None:
    # The fast path refuses the page (an e-mail that is a number); the models' check then runs
    # and raises the error a typed call gives, naming the record and field. Nothing is yielded
    # from that page on.
    collection = Collection(5000, unfit_at=2005)
    fast = ArrowPages(CUSTOMER)
    seen: list[str] = []

    async def export() -> None:
        async with AsyncFinalPOS(
            api_key="sk_test_export", transport=MockTransport(collection.handle)
        ) as client:
            paginator = client.customers.list(limit=100)
            async for page in pages_in_order(paginator, concurrency=4, fast=fast.convert):
                assert isinstance(page.fast, pa.RecordBatch)
                seen.extend(record["id"] for record in page.records)

    with pytest.raises(ResponseValidationError) as caught:
        await export()
    assert caught.value.field_path == "[5].email"
    assert "list[Customer]" in str(caught.value)
    assert seen == [f"c{n}" for n in range(2000)]


CELLS: list[Any] = [
    *ODD_VALUES,
    "a,b",
    'say "hi"',
    "two\nlines",
    "cr\rhere",
    " padded ",
    "naïve ☕",
    "tab\there",
    {"k": "v,w"},
    [{"a": None}],
]


def test_csv_pages_are_what_csv_writer_writes_row_by_row() -> None:
    rng = random.Random(24)
    schema = {
        "properties": {
            "id": {"type": "string"},
            "n": {"type": "number"},
            "flag": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "billing": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
            },
            "open": {"type": "object"},
        }
    }
    columns = csv_columns(schema)
    assert columns == ["id", "n", "flag", "tags", "billing.city", "billing.zip", "open"]
    page_text = csv_page_text(columns)
    paths = csv_paths(columns)
    for _ in range(300):
        records: list[Any] = []
        for _ in range(rng.randint(0, 6)):
            if rng.random() < 0.05:
                records.append(rng.choice(["not an object", 3, None, ["x"]]))
                continue
            record = {name: rng.choice(CELLS) for name in ("id", "n", "flag", "tags", "open")}
            record["billing"] = rng.choice(
                [None, "x", {}, {"city": rng.choice(CELLS), "zip": rng.choice(CELLS)}]
            )
            records.append({k: v for k, v in record.items() if rng.random() < 0.9})
        expected = io.StringIO()
        rows = [csv_row(r if isinstance(r, dict) else {}, paths) for r in records]
        csv.writer(expected, lineterminator="\n").writerows(rows)
        assert page_text(records) == expected.getvalue(), records


def test_a_csv_of_one_column_quotes_an_empty_cell_as_csv_does() -> None:
    page_text = csv_page_text(["id"])
    assert page_text([{"id": "a"}, {}, {"id": ""}, {"id": "x,y"}]) == 'a\n""\n""\n"x,y"\n'


def test_json_lines_are_the_same_through_a_text_or_a_binary_stream() -> None:
    records = [customer(1), {"id": "é\u2028", "n": [1, None]}]
    text = io.StringIO()  # no binary buffer under it
    binary = io.BytesIO()
    wrapper = io.TextIOWrapper(binary, encoding="utf-8", newline="")
    for out in (text, wrapper):
        writer = JsonLinesWriter(out)
        writer.write_page(ExportPage(records))
        writer.write_page(ExportPage([]))
        writer.close()
    assert binary.getvalue().decode() == text.getvalue()
    assert text.getvalue().count("\n") == 2


def test_records_are_written_back_as_dumps_would_write_them() -> None:
    body = b'[{"id":"a","n":null,"s":"\\u00e9\\u2028","x":[1.5,{"y":null}]},{"id":"b"}]'
    for record in loads(body):
        assert dumps_decoded(record) == dumps(record)


def test_arrow_shows_most_pages_need_no_look_at_the_python_values() -> None:
    # The Python class checks are skipped where the Arrow arrays rule out `""`, `[]` and strings
    # read as lists (`_dicts_proof`); where they cannot, the Python check still decides.
    properties = CUSTOMER["properties"]
    tags, billing = _dicts_proof(properties["tags"]), _dicts_proof(properties["billing"])
    assert tags is not None
    assert billing is not None
    assert _dicts_proof(properties["email"]) is None  # no object, no list: nothing to show
    schema = ArrowPages(CUSTOMER).schema
    list_type, address = schema.field("tags").type, schema.field("billing").type
    assert tags(pa.array([["vip", "seed"], None], type=list_type))
    assert not tags(pa.array([["vip"], []], type=list_type))  # `[]` may have been `""`
    assert not tags(pa.array([["vip"], ["a"]], type=list_type))  # `["a"]` may have been `"a"`
    assert billing(pa.array([{"city": "London"}, None], type=address))
    assert not billing(pa.array(["", None], type=address))
    assert not billing(pa.array([{}], type=address))  # no field set: `{}`, `""` or `[]`
    # and the pages themselves: taken either way, refused where the value was a string
    fast = ArrowPages(CUSTOMER)
    assert fast.convert([customer(0, tags=["a"]), customer(1, tags=[])]) is not None
    assert fast.convert([customer(0, tags=["vip"]), customer(1, tags="ab")]) is None
    assert fast.convert([customer(0, tags="")]) is None
