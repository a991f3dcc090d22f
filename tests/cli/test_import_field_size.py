"""`finalpos import --max-field-bytes`: a field over the cap is an invalid row, never a crash.

Python's csv module refused a cell over 131,072 characters with a traceback and no line number,
and a JSON Lines row was read whole however long (a 1 GiB line: 4.1 GiB of memory). Now a CSV
cell or a JSON Lines line over --max-field-bytes (default 16 MiB) is an invalid row named by line
and column, read to its end without being held, and the run goes on with the other rows.
"""

from __future__ import annotations

import csv
import io
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_run import run
from sandbox_proc import ROOT

from finalpos_async._constants import IMPORT_MAX_FIELD_BYTES
from finalpos_async.cli import _bounded
from finalpos_async.cli._rows import RowError, read_records
from finalpos_async.sandbox import Sandbox


def stored_emails(sb: Sandbox) -> dict[str, dict[str, Any]]:
    result = run(sb, "export", "customers")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return {record["email"]: record for record in records}


def failed_rows(path: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return records[1:]  # after the header line


def test_the_default_is_16_mib_and_a_200_kb_cell_is_imported(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    assert IMPORT_MAX_FIELD_BYTES == 16 * 1024 * 1024
    big = "Ann" + "x" * 200_000  # over csv's own limit of 131,072 characters
    source = tmp_path / "c.csv"
    source.write_text(f"email,first_name,last_name\na@example.com,{big},A\nb@example.com,B,B\n")
    result = run(sandbox, "import", "customers", str(source), "--no-journal")
    assert result.exit_code == 0, result.output
    stored = stored_emails(sandbox)
    assert stored["a@example.com"]["firstName"] == big
    assert set(stored) == {"a@example.com", "b@example.com"}


def test_a_cell_over_max_field_bytes_is_an_invalid_row_with_its_line_and_column(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    long = "y" * 1500
    source = tmp_path / "c.csv"
    source.write_text(
        "email,first_name,last_name\n"
        "a@example.com,Ann,A\n"  # line 2
        f"b@example.com,Bob,{long}\n"  # line 3: column 3 over the cap
        f'c@example.com,"Cy\n{long}\n{long}",C\n'  # lines 4-6: a quoted cell over it
        "d@example.com,Dee,D\n",  # line 7
        encoding="utf-8",
    )
    result = run(
        sandbox, "import", "customers", str(source), "--no-journal", "--max-field-bytes", "1000"
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert set(stored_emails(sandbox)) == {"a@example.com", "d@example.com"}  # the run went on
    failed = failed_rows(tmp_path / "c.csv.failed.jsonl")
    assert [(r["line"], r["field"], r["outcome"]) for r in failed] == [
        (3, "last_name", "invalid"),
        (4, "first_name", "invalid"),
    ]
    assert "column 3 is larger than --max-field-bytes (1,000 bytes)" in failed[0]["error"]
    assert "column 2 is larger than --max-field-bytes" in failed[1]["error"]
    assert all("row" not in r for r in failed)  # never read, so never held or written
    # Importing the failed-rows file says where the row must be fixed.
    again = run(sandbox, "import", "customers", str(tmp_path / "c.csv.failed.jsonl"))
    assert again.exit_code == 1
    kept = failed_rows(tmp_path / "c.csv.failed.jsonl")  # written anew by that run
    assert [r["line"] for r in kept] == [3, 4]
    assert all(r["error"].startswith(f"not read from {source}: ") for r in kept)


def test_a_json_lines_line_over_max_field_bytes_is_an_invalid_row(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    rows = [
        {"email": "a@example.com", "firstName": "Ann", "lastName": "A"},
        {"email": "b@example.com", "firstName": "B" * 3000, "lastName": "B"},
        {"email": "c@example.com", "firstName": "Cy", "lastName": "C"},
    ]
    source = tmp_path / "c.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    result = run(
        sandbox, "import", "customers", str(source), "--no-journal", "--max-field-bytes", "2048"
    )
    assert result.exit_code == 1
    assert set(stored_emails(sandbox)) == {"a@example.com", "c@example.com"}
    failed = failed_rows(tmp_path / "c.jsonl.failed.jsonl")
    assert [r["line"] for r in failed] == [2]
    assert "the line is larger than --max-field-bytes (2,048 bytes)" in failed[0]["error"]


def test_the_cap_counts_utf8_bytes_and_a_header_over_it_is_refused() -> None:
    text = "name\n" + "é" * 600 + "\n" + "e" * 600 + "\n"  # 1,200 and 600 bytes
    records = list(read_records(io.StringIO(text, newline=""), "csv", max_field_bytes=1000))
    assert isinstance(records[0][1], RowError)
    assert (records[0][0], records[0][1].field) == (2, "name")
    assert records[1] == (3, {"name": "e" * 600})
    with pytest.raises(ValueError, match="line 1: header cell 1 is larger than --max-field"):
        list(read_records(io.StringIO("x" * 50 + "\n", newline=""), "csv", max_field_bytes=10))


@pytest.mark.parametrize("chunk", [1, 3, _bounded.CHUNK])
def test_csv_records_are_those_of_the_csv_module(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # Quotes, doubled quotes, text after a closing quote, line breaks in quoted cells, \r\n, \r,
    # blank lines: the same cells and line numbers as csv.reader, across any chunk boundary.
    monkeypatch.setattr(_bounded, "CHUNK", chunk)
    pieces = ["a", "bé", ",", ";", '"', '""', "\n", "\r", "\r\n", " ", "\t"]
    rng = random.Random(chunk)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        delimiter = rng.choice([",", ";", "\t"])
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        expected: list[tuple[int, list[str] | _bounded.Oversized, int]] = []
        line = 1
        for cells in reader:
            first, line = line, reader.line_num + 1
            expected.append((first, cells or [""], len(cells or [""])))
        got = list(_bounded.csv_records(io.StringIO(text, newline=""), delimiter, 10**9))
        assert got == expected, repr(text)


# The child measures its own peak memory (ru_maxrss, KiB on Linux) around one validate-only run
# of FILE, after a warm-up run of SMALL (the CLI's imports and the spec loaded by then).
MEASURE = """
import resource, sys
from finalpos_async.cli._app import cli

def validate(path):
    try:
        cli.main(["import", "customers", path, "--validate-only", "--max-field-bytes",
                  str(2**20)], prog_name="finalpos")
    except SystemExit as exc:
        print("exit", exc.code)

validate(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
validate(sys.argv[1])
print("growth_kib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.e2e
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_300_mib_field_is_read_without_being_held(tmp_path: Path, fmt: str) -> None:
    size = 300 * 2**20
    big, small = tmp_path / f"big.{fmt}", tmp_path / f"small.{fmt}"
    good = [("a@example.com", "Ann"), ("c@example.com", "Cy")]
    for path, length in ((big, size), (small, 10)):
        with path.open("w", encoding="utf-8") as out:
            if fmt == "csv":
                out.write("email,first_name,last_name\n")
            for n, (email, name) in enumerate(good):
                if n == 1:  # the huge row between the good ones
                    out.write(
                        '{"email": "b@example.com", "firstName": "B", "lastName": "B", "note": "'
                        if fmt == "jsonl"
                        else "b@example.com,B"
                    )
                    for _ in range(length // 2**20):
                        out.write("z" * 2**20)
                    out.write("z" * (length % 2**20))
                    out.write('"}\n' if fmt == "jsonl" else ",B\n")
                if fmt == "jsonl":
                    out.write(json.dumps({"email": email, "firstName": name, "lastName": "X"}))
                    out.write("\n")
                else:
                    out.write(f"{email},{name},X\n")
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(big), str(small)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=ROOT,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == ["exit 0", "exit 1"]  # the big file has a bad row
    assert "2 valid rows, 1 invalid rows" in done.stderr
    assert "larger than --max-field-bytes (1,048,576 bytes)" in done.stderr
    growth_mib = int(done.stdout.split("growth_kib")[1]) / 1024
    print(f"{fmt}: peak memory grew {growth_mib:.1f} MiB")
    # Measured: under 1 MiB. A line held whole would be at least its 300 MiB.
    assert growth_mib < 32, growth_mib
