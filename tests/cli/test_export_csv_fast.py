"""The CSV export's fast path (a page checked column by column while its cells are read): the
same bytes as the model check and the usual writer, and never a record the models refuse."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import attrs
import pytest
from cli_run import run
from record_mutations import ODD_VALUES, model_accepts, mutations
from spec_examples import full_example
from test_export import seed

from finalpos_async import types
from finalpos_async._model import Model
from finalpos_async.cli import _csv_rows
from finalpos_async.cli._calls import csv_columns
from finalpos_async.cli._csv_check import ColumnCheck, PageColumns
from finalpos_async.cli._csv_rows import CsvPages
from finalpos_async.operations import OPERATIONS
from finalpos_async.sandbox import Sandbox
from finalpos_async.spec import component

CUSTOMER = component("CustomerDto")

# Every list method with a record model (the fast path checks against the model itself).
LISTS = [op for op in OPERATIONS if op.kind == "list" and op.response_schema and op.response_model]


AWKWARD_NAME = 'S "quoted", with a comma'  # a cell the CSV must quote


def outcome(write: Any, page: list[Any]) -> Any:
    """What `write(page)` gives, or the class of what it raises (a list holding an integer
    beyond 64 bits is refused by the JSON encoder, on both paths alike)."""
    try:
        return write(page)
    except TypeError as error:
        return type(error)


@pytest.mark.parametrize("op", LISTS, ids=lambda op: op.qualified_name)
def test_the_csv_fast_path_never_takes_a_page_the_models_refuse(op: Any) -> None:
    assert op.response_schema is not None
    assert op.response_model is not None
    schema = component(op.response_schema)
    cls = getattr(types, op.response_model)
    pages = CsvPages(csv_columns(schema), cls)
    example = full_example(schema)
    assert model_accepts([example], cls)
    text = pages.checked_text([example, example])
    assert text is not None  # the documented record is taken
    assert text == pages.text([example, example])
    taken = 0
    for where, record in mutations(example):
        # the changed record alone, first and last: a check that reads one value to learn a
        # column's kind would see only the changed one (the Parquet fast path had that blind spot)
        for page in ([example, record], [record, example], [record]):
            text = outcome(pages.checked_text, page)
            if text is not None:
                taken += 1
                assert model_accepts(page, cls), f"{op.qualified_name}: fast path took {where}"
                assert text == outcome(pages.text, page), where
    assert taken  # some changes are fine (a field removed, another valid value)


def customer(rng: random.Random, n: int) -> dict[str, Any]:
    record = copy.deepcopy(full_example(CUSTOMER))
    record["id"] = f"c{n}"
    record["email"] = rng.choice([f"c{n}@example.com", 'a "quoted", odd\nvalue', "é,\r"])
    for name in list(record):
        roll = rng.random()
        if roll < 0.15:
            del record[name]
        elif roll < 0.3:
            record[name] = rng.choice(ODD_VALUES)
        elif roll < 0.35:
            record[name] = None
    if rng.random() < 0.2:
        record["billing"] = rng.choice([None, {}, {"city": "a,b"}, {"city": 3}, "x"])
    return record


def test_csv_fast_and_slow_paths_write_the_same_bytes_on_awkward_pages() -> None:
    rng = random.Random(24)
    pages = CsvPages(csv_columns(CUSTOMER), types.Customer)
    taken = refused = 0
    for _ in range(400):
        records: list[Any] = [customer(rng, n) for n in range(rng.randint(0, 8))]
        if rng.random() < 0.05:
            records.append(rng.choice(["not an object", 3, None]))
        text = outcome(pages.checked_text, records)
        if text is None:
            refused += 1
            continue
        taken += 1
        assert model_accepts(records, types.Customer), records
        assert text == outcome(pages.text, records), records
    assert taken > 20  # pages the models accept are taken (some with odd but valid values)
    assert refused > 20


@attrs.define(kw_only=True)
class Twig(Model):
    """A model with a required field, nested in `Branch`."""

    name: str
    extra: dict[str, Any] = attrs.field(factory=lambda: {}, eq=False)


@attrs.define(kw_only=True)
class Branch(Model):
    """A model with a required field, a nested model, a list of them and a list of lists."""

    name: str
    grid: list[list[int]] | None = None
    children: list[Twig] | None = None
    parent: Twig | None = None
    extra: dict[str, Any] = attrs.field(factory=lambda: {}, eq=False)


@pytest.mark.parametrize(
    ("record", "fits"),
    [
        ({"name": "a"}, True),
        ({"name": "a", "parent": {"name": "b", "more": 1}}, True),
        ({"name": "a", "parent": {}}, False),  # a required field one level down
        ({"name": "a", "parent": {"name": None}}, False),
        ({"name": "a", "parent": "b"}, False),
        ({"name": "a", "children": [{"name": "b"}, {"name": "c"}]}, True),
        ({"name": "a", "children": [{"name": "b"}, {}]}, False),
        ({"name": "a", "children": [None]}, False),
        ({"name": "a", "children": {"name": "b"}}, False),
        ({"name": "a", "grid": [[1, 2], [], [3.5]]}, True),
        ({"name": "a", "grid": [[1, True]]}, False),
        ({"name": "a", "grid": [[float("nan")]]}, False),
        ({"name": "a", "grid": [1]}, False),
        ({"name": None}, False),
        ({}, False),
        ({"name": "a", "unknown": object()}, True),  # unknown keys go to `extra`, unchecked
    ],
)
def test_the_column_check_follows_nested_models_lists_and_required_fields(
    record: dict[str, Any], fits: bool
) -> None:
    check = ColumnCheck(Branch)
    page = [{"name": "first"}, record]
    assert check(PageColumns(page)) is fits
    assert model_accepts(page, Branch) is fits


def test_a_model_field_type_the_check_does_not_know_leaves_the_page_to_the_models() -> None:
    @attrs.define(kw_only=True)
    class Odd(Model):
        when: int | str | None = None
        extra: dict[str, Any] = attrs.field(factory=lambda: {}, eq=False)

    assert ColumnCheck.for_model(Odd) is None
    assert ColumnCheck.for_model(dict) is None
    assert ColumnCheck.for_model(None) is None
    assert CsvPages(["when"], Odd).checked_text([{"when": 1}]) is None


def test_a_csv_export_is_the_same_file_with_and_without_the_fast_path(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(sandbox, tmp_path, 25, first_name=AWKWARD_NAME)
    fast_file, slow_file = tmp_path / "fast.csv", tmp_path / "slow.csv"
    args = ["export", "customers", "--format", "csv", "--page-size", "10"]
    calls: list[bool] = []
    checked_text = CsvPages.checked_text

    def counted(self: CsvPages, records: list[Any]) -> str | None:
        text = checked_text(self, records)
        calls.append(text is not None)
        return text

    monkeypatch.setattr(CsvPages, "checked_text", counted)
    assert run(sandbox, *args, "-o", str(fast_file)).exit_code == 0
    assert len(calls) >= 3
    assert all(calls)  # every page went the fast way
    monkeypatch.setattr(_csv_rows.ColumnCheck, "for_model", lambda model: None)
    assert run(sandbox, *args, "-o", str(slow_file)).exit_code == 0
    fast, slow = fast_file.read_bytes(), slow_file.read_bytes()
    assert fast == slow
    assert fast.count(b"\n") == 26
    assert b'"S ""quoted"", with a comma"' in fast


def test_a_malformed_record_stops_a_csv_export_naming_its_field(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    seed(sandbox, tmp_path, 3, first_name=AWKWARD_NAME)
    listed = json.loads(run(sandbox, "export", "customers").stdout.splitlines()[0])
    stored = sandbox.storage.get("CustomerDto", listed["id"])
    assert stored is not None
    sandbox.storage.insert_many(
        "CustomerDto", [("zz-bad", {**stored, "id": "zz-bad", "lastAction": "soon"})]
    )
    target = tmp_path / "out.csv"
    result = run(sandbox, "export", "customers", "--format", "csv", "-o", str(target))
    assert result.exit_code == 1
    assert "[3].lastAction" in result.output
    assert not target.exists()


def test_the_readme_says_how_the_csv_export_is_checked_and_which_formats_meet_the_goal() -> None:
    readme = Path(__file__).parents[2] / "README.md"
    text = " ".join(readme.read_text(encoding="utf-8").split())
    assert "checked against the model column by column" in text
    assert "stricter than the models', never looser" in text
    assert "the file is byte for byte what it would be without it" in text
    assert "**met for JSON Lines and CSV and missed for Parquet**" in text
