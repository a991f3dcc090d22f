"""`finalpos import`: the README's main job, run through the real command against a sandbox."""

from __future__ import annotations

import json
import re
import shlex
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cli_run import run
from click.testing import Result

import finalpos_async.cli._import as import_module
from finalpos_async.sandbox import FaultConfig, Sandbox

EXAMPLE = Path(__file__).parents[2] / "examples" / "customers.csv"


def stored(sb: Sandbox, path: str = "/v1/api/customers") -> list[dict[str, Any]]:
    """Everything a list endpoint of the sandbox holds, read over HTTP page by page."""
    found: list[dict[str, Any]] = []
    while True:
        request = urllib.request.Request(
            f"{sb.url}{path}?skip={len(found)}&limit=1000",
            # "ok": a scripted request skips the fault injector, so a faulty sandbox can be read.
            headers={"x-api-key": sb.api_key, "x-sandbox-fault": "ok"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            page = json.loads(response.read())
        found.extend(page)
        if len(page) < 1000:
            return found


def stored_customers(sb: Sandbox) -> list[dict[str, Any]]:
    return stored(sb)


def failed_rows(path: Path) -> list[dict[str, Any]]:
    """The records of a failed-rows file, without its header line."""
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert records[0]["finalposFailedRows"] == 1
    return records[1:]


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.lstrip(), encoding="utf-8")
    return path


def test_example_file_imports_every_valid_row_and_reports_the_bad_ones(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    failed = tmp_path / "failed.jsonl"
    result = run(
        sandbox, "import", "customers", str(EXAMPLE), "--failed-file", str(failed), "--no-journal"
    )
    # The example holds 6 deliberately invalid rows: they are not sent, so the exit is 1.
    assert result.exit_code == 1, result.output
    stored = stored_customers(sandbox)
    assert len(stored) == 2994
    assert len({c["email"] for c in stored}) == 2994
    records = failed_rows(failed)
    assert [r["line"] for r in records] == [422, 489, 1310, 2060, 2098, 2652]
    assert {r["field"] for r in records} >= {"email", "lastName", "tags", "metadata"}
    assert "invalid row(s) (not sent)" in result.stderr
    assert "422" in result.stderr
    assert "created" in result.stderr
    assert "2994" in result.stderr
    # Nested dotted columns and snake_case headers arrived as the API's camelCase objects.
    first = next(c for c in stored if c["email"].endswith(".0@example.com"))
    assert first["firstName"] == "Dennis"
    assert first["billing"]["postCode"] == "10124"
    assert first["tags"] == ["newsletter", "loyal"]


def test_a_clean_file_exits_zero_and_leaves_no_failed_file(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = write_csv(
        tmp_path / "c.csv",
        """
firstName,last_name,Email,billing.city,shipping.post_code,tags,metadata
Ada,Lovelace,ada@example.com,London,N1,"[""math""]","[{""key"": ""k"", ""value"": ""v""}]"
Alan,Turing,alan@example.com,,,,
""",
    )
    result = run(sandbox, "import", "customers", str(source))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "c.csv.failed.jsonl").exists()
    stored = {c["email"]: c for c in stored_customers(sandbox)}
    assert stored["ada@example.com"]["billing"] == {"city": "London"}
    assert stored["ada@example.com"]["shipping"] == {"postCode": "N1"}
    assert stored["ada@example.com"]["metadata"] == [{"key": "k", "value": "v"}]
    assert "billing" not in stored["alan@example.com"]


def test_json_lines_input_is_checked_the_same_way(sandbox: Sandbox, tmp_path: Path) -> None:
    source = tmp_path / "c.jsonl"
    source.write_text(
        "\n".join(
            [
                json.dumps({"email": "a@example.com", "firstName": "A", "lastName": "B"}),
                json.dumps(
                    {
                        "email": "b@example.com",
                        "first_name": "B",
                        "last_name": "C",
                        "billing": {"city": "Oslo"},
                    }
                ),
                "",
                json.dumps({"email": "c@example.com", "firstName": 3, "lastName": "C"}),
                "{not json",
            ]
        )
        + "\n"
    )
    result = run(sandbox, "import", "customers", str(source))
    assert result.exit_code == 1
    assert {c["email"] for c in stored_customers(sandbox)} == {"a@example.com", "b@example.com"}
    failed = failed_rows(tmp_path / "c.jsonl.failed.jsonl")
    assert [(r["line"], r.get("field")) for r in failed] == [(4, "firstName"), (5, None)]
    assert "must be text" in failed[0]["error"]
    assert "not valid JSON" in failed[1]["error"]


def _files(directory: Path) -> set[str]:
    return {str(path.relative_to(directory)) for path in directory.rglob("*")}


def test_validate_only_sends_nothing_and_writes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    # The checkout's example itself, against a target whose data is kept (where an import
    # writes EXAMPLE.journal): nothing may appear beside it.
    before = _files(EXAMPLE.parent)
    result = run(
        sandbox,
        "import",
        "customers",
        str(EXAMPLE),
        "--validate-only",
        "--failed-file",
        str(tmp_path / "f.jsonl"),
    )
    assert result.exit_code == 1
    assert "2994 valid rows, 6 invalid rows" in result.stderr
    assert stored_customers(sandbox) == []
    assert _files(EXAMPLE.parent) == before
    assert _files(tmp_path) == set()  # the --failed-file given is not written either


def test_validate_only_in_a_directory_leaves_it_as_it_was(tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "c.csv",
        "email,first_name,last_name\n"
        + "".join(f"user{n}@example.com,User,{n},one cell too many\n" for n in range(30))
        + "ok@example.com,Ok,Row\n",
    )
    db = tmp_path / "sandbox.sqlite3"
    before = _files(tmp_path)
    result = run(
        None, "--sandbox-db", str(db), "import", "customers", str(source), "--validate-only"
    )
    assert result.exit_code == 1
    assert "1 valid rows, 30 invalid rows (nothing was sent)" in result.stderr
    assert "--validate-only writes no file" in result.stderr
    assert _files(tmp_path) == before  # no journal, no failed-rows file, no sandbox database
    assert not (tmp_path / "c.csv.journal").exists()


def test_rows_the_api_refuses_keep_their_lines_and_the_failed_file_reimports(
    tmp_path: Path,
) -> None:
    source = write_csv(
        tmp_path / "c.csv",
        "email,first_name,last_name\n"
        + "".join(f"user{n}@example.com,User,{n}\n" for n in range(40)),
    )
    refusing = FaultConfig(rate=1.0, kinds=("422",), seed=1)
    with Sandbox(faults=refusing).run_in_thread() as broken:
        result = run(broken, "import", "customers", str(source), "--no-journal")
        assert stored_customers(broken) == []
    assert result.exit_code == 1
    failed_file = tmp_path / "c.csv.failed.jsonl"
    failed = failed_rows(failed_file)
    assert sorted(r["line"] for r in failed) == list(range(2, 42))
    assert all(r["outcome"] == "failed" for r in failed)
    assert all("UnprocessableEntityError (422)" in r["error"] for r in failed)
    assert "40 x UnprocessableEntityError (422)" in result.stderr

    with Sandbox().run_in_thread() as healthy:
        again = run(healthy, "import", "customers", str(failed_file))
        assert again.exit_code == 0, again.output
        emails = sorted(c["email"] for c in stored_customers(healthy))
    assert emails == sorted(f"user{n}@example.com" for n in range(40))
    # Its own failures would have replaced it; with none left it keeps only its header, and
    # no `c.csv.failed.jsonl.failed.jsonl` was ever made.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "c.csv.failed.jsonl"]
    assert failed_rows(failed_file) == []
    with Sandbox().run_in_thread() as healthy:
        repeated = run(healthy, "import", "customers", str(failed_file))
        assert repeated.exit_code == 0
        assert "no rows left" in repeated.stderr
        assert stored_customers(healthy) == []


def test_a_target_that_cannot_be_listed_gets_nothing_from_a_fresh_journal(
    tmp_path: Path,
) -> None:
    source = write_csv(
        tmp_path / "c.csv",
        "email,first_name,last_name\n" + "".join(f"u{n}@example.com,U,{n}\n" for n in range(8)),
    )
    down = FaultConfig(rate=1.0, kinds=("500-after",), seed=1)
    with Sandbox(faults=down, honour_idempotency=False).run_in_thread() as broken:
        result = run(broken, "import", "customers", str(source))
        assert result.exit_code == 1
        # A fresh journal cannot tell which rows an earlier run of this job created, and the
        # target cannot be listed to find out: nothing is sent (a send could duplicate).
        assert stored_customers(broken) == []
        failed = failed_rows(tmp_path / "c.csv.failed.jsonl")
        assert [r["outcome"] for r in failed] == ["not sent"] * 8
        assert 'set their "exists"' not in " ".join(result.stderr.split())
        again = run(broken, "import", "customers", str(source))
        assert again.exit_code == 1
        assert stored_customers(broken) == []


def test_journal_makes_a_rerun_skip_what_is_done(sandbox: Sandbox, tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "c.csv",
        "email,first_name,last_name\n" + "".join(f"j{n}@example.com,J,{n}\n" for n in range(30)),
    )
    first = run(sandbox, "import", "customers", str(source))
    assert first.exit_code == 0, first.output
    assert (tmp_path / "c.csv.journal").exists()
    second = run(sandbox, "import", "customers", str(source))
    assert second.exit_code == 0
    assert "already imported (journal)" in second.stderr
    assert len(stored_customers(sandbox)) == 30


def test_key_column_identifies_rows(sandbox: Sandbox, tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "c.csv", "email,first_name,last_name\nk1@example.com,K,1\nk2@example.com,K,2\n"
    )
    assert run(sandbox, "import", "customers", str(source), "--key", "email").exit_code == 0
    # The same rows in another order: the journal knows them by email, nothing is sent again.
    write_csv(source, "email,first_name,last_name\nk2@example.com,K,2\nk1@example.com,K,1\n")
    again = run(sandbox, "import", "customers", str(source), "--key", "email")
    assert again.exit_code == 0
    assert len(stored_customers(sandbox)) == 2


def test_other_resources_import_too(sandbox: Sandbox, tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "p.csv",
        "name,product_type,min_price,tags\nTea,simple,2.5,hot;drink\nCake,simple,4,\n",
    )
    result = run(sandbox, "import", "products", str(source))
    assert result.exit_code == 0, result.output
    products = stored(sandbox, "/v1/api/products")
    assert {(p["name"], p.get("minPrice")) for p in products} == {("Tea", 2.5), ("Cake", 4)}


def test_unknown_resource_lists_the_importable_ones(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "x.csv", "a\n1\n")
    result = run(None, "import", "widgets", str(source))
    assert result.exit_code == 2
    assert "unknown resource" in result.stderr
    assert "customers" in result.stderr


def test_without_a_key_it_says_it_uses_an_embedded_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FINALPOS_API_KEY", raising=False)
    monkeypatch.delenv("FINALPOS_BASE_URL", raising=False)
    source = write_csv(tmp_path / "c.csv", "email,first_name,last_name\ne@example.com,E,F\n")
    db = tmp_path / "sandbox.db"
    result = run(None, "--sandbox-db", str(db), "import", "customers", str(source))
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "embedded sandbox" in line]
    assert len(lines) == 1
    # The data was kept: a second command on the same file sees it.
    exported = run(None, "--sandbox-db", str(db), "export", "customers")
    assert exported.exit_code == 0
    assert json.loads(exported.stdout.splitlines()[0])["email"] == "e@example.com"


def test_a_journal_cannot_resume_another_kind_of_job(sandbox: Sandbox, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "c.csv", "email,first_name,last_name\nq@example.com,Q,R\n")
    journal = str(tmp_path / "shared.journal")
    assert run(sandbox, "import", "customers", str(source), "--journal", journal).exit_code == 0
    other = run(sandbox, "import", "customers", str(source), "--journal", journal, "--key", "email")
    assert other.exit_code == 1
    assert "give this run its own journal file" in " ".join(other.stderr.split())
    assert len(stored_customers(sandbox)) == 1


def instruction(result: Result, sb: Sandbox) -> list[str]:
    """The command the import told the user to run (after `finalpos`), with the real key."""
    found = re.findall(r"run `(finalpos [^`]+)`", " ".join(result.stderr.split()))
    assert len(found) == 1, result.stderr
    words = shlex.split(found[0])[1:]
    return [sb.api_key if word == "$FINALPOS_API_KEY" else word for word in words]


PADDED = (
    "email,first_name,last_name,last_action\n"
    '"  ann@example.com ",\u00a0Ann ,Lee,\n'
    " bob@example.com\t, Bob,Ray ,yesterday\n"
)


def test_padded_csv_cells_are_stored_trimmed_and_keep_their_identity(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "c.csv", PADDED)
    first = run(sandbox, "import", "customers", str(source))
    assert first.exit_code == 1  # bob's last_action is not a date-time
    assert [(c["email"], c["firstName"]) for c in stored_customers(sandbox)] == [
        ("ann@example.com", "Ann")
    ]
    # The failed-rows file keeps bob's cells as they were in the file.
    failed_file = tmp_path / "c.csv.failed.jsonl"
    (bob,) = failed_rows(failed_file)
    assert bob["row"]["email"] == " bob@example.com\t"
    # The same rows without the padding are the same rows: nothing new is created.
    write_csv(source, "email,first_name,last_name,last_action\nann@example.com,Ann,Lee,\n")
    again = run(sandbox, "import", "customers", str(source))
    assert again.exit_code == 0, again.output
    assert "already imported (journal)" in again.stderr
    assert len(stored_customers(sandbox)) == 1
    # Bob fixed in the failed-rows file (its other cells as they were): trimmed there too.
    bob["row"]["last_action"] = "2025-12-07T19:31:48Z"
    header = failed_file.read_text(encoding="utf-8").splitlines()[0]
    failed_file.write_text(f"{header}\n{json.dumps(bob)}\n", encoding="utf-8")
    fixed = run(sandbox, *instruction(first, sandbox))
    assert fixed.exit_code == 0, fixed.output
    names = sorted((c["email"], c["firstName"], c["lastName"]) for c in stored_customers(sandbox))
    assert names == [
        ("ann@example.com", "Ann", "Lee"),
        ("bob@example.com", "Bob", "Ray"),
    ]


def test_rows_not_sent_keep_their_identity_through_the_failed_file_when_trimmed(
    tmp_path: Path,
) -> None:
    source = write_csv(
        tmp_path / "c.csv",
        "email,first_name,last_name\n" + "".join(f" p{n}@example.com , P ,{n}\n" for n in range(6)),
    )
    down = FaultConfig(rate=1.0, kinds=("500-after",), seed=1)
    with Sandbox(faults=down, honour_idempotency=False).run_in_thread() as broken:
        first = run(broken, "import", "customers", str(source))
        assert first.exit_code == 1
        failed_file = tmp_path / "c.csv.failed.jsonl"
        assert [r["outcome"] for r in failed_rows(failed_file)] == ["not sent"] * 6
        assert all(r["row"]["email"].startswith(" ") for r in failed_rows(failed_file))
        identities = {r["identity"] for r in failed_rows(failed_file)}
        # Imported as it is, the file's padded cells give the same identities (trimmed again,
        # not "changed"), and nothing reaches a target that cannot be listed.
        again = run(broken, *instruction(first, broken))
        assert again.exit_code == 1
        assert "changed since they were imported" not in again.stderr
        assert {r["identity"] for r in failed_rows(failed_file)} == identities
        assert stored_customers(broken) == []


def test_keep_whitespace_keeps_cells_as_given_and_the_instruction_repeats_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "c.csv", PADDED)
    first = run(sandbox, "import", "customers", str(source), "--keep-whitespace")
    assert first.exit_code == 1
    assert [c["email"] for c in stored_customers(sandbox)] == ["  ann@example.com "]
    command = instruction(first, sandbox)
    assert command[-1] == "--keep-whitespace"
    failed_file = tmp_path / "c.csv.failed.jsonl"
    (bob,) = failed_rows(failed_file)
    bob["row"]["last_action"] = "2025-12-07T19:31:48Z"
    header = failed_file.read_text(encoding="utf-8").splitlines()[0]
    failed_file.write_text(f"{header}\n{json.dumps(bob)}\n", encoding="utf-8")
    fixed = run(sandbox, *command)
    assert fixed.exit_code == 0, fixed.output
    assert sorted(c["email"] for c in stored_customers(sandbox)) == [
        "  ann@example.com ",
        " bob@example.com\t",
    ]


def test_a_repeated_key_stays_a_repeat_in_the_failed_file_beside_its_first_row(
    tmp_path: Path,
) -> None:
    source = write_csv(
        tmp_path / "c.csv",
        "email,first_name,last_name\na@example.com,A,1\nb@example.com,B,2\na@example.com,A,3\n",
    )
    refusing = FaultConfig(rate=1.0, kinds=("422",), seed=1)
    with Sandbox(faults=refusing).run_in_thread() as broken:
        first = run(broken, "import", "customers", str(source), "--key", "email", "--no-journal")
    assert first.exit_code == 1
    failed_file = tmp_path / "c.csv.failed.jsonl"
    # The repeat is written first (pass 1), its first row after it (refused by the API; the
    # two sent rows finish in either order).
    written = [(r["line"], r["outcome"]) for r in failed_rows(failed_file)]
    assert written[0] == (4, "invalid")
    assert sorted(written[1:]) == [(2, "failed"), (3, "failed")]
    with Sandbox().run_in_thread() as healthy:
        again = run(healthy, "import", "customers", str(failed_file))
        assert again.exit_code == 1
        assert "repeats the --key value 'a@example.com' of line 2" in again.stderr
        assert sorted((c["email"], c["lastName"]) for c in stored_customers(healthy)) == [
            ("a@example.com", "1"),
            ("b@example.com", "2"),
        ]
        (repeat,) = failed_rows(failed_file)
        assert repeat["repeats"] == {"key": "a@example.com", "line": 2}
        repeat["row"]["email"] = "c@example.com"
        header = failed_file.read_text(encoding="utf-8").splitlines()[0]
        failed_file.write_text(f"{header}\n{json.dumps(repeat)}\n", encoding="utf-8")
        fixed = run(healthy, "import", "customers", str(failed_file))
        assert fixed.exit_code == 0, fixed.output
        assert len(stored_customers(healthy)) == 3


TWO_ROWS = "first_name,last_name,email,metadata\nAda,L,ada@example.com,\nAlan,T,alan@example.com,\n"
# The same rows, the second now unreadable, and a third: what a user saving the file makes of it.
EDITED = (
    TWO_ROWS.replace("alan@example.com,", "alan@example.com,not json") + "Bo,R,bo@example.com,\n"
)


def test_a_file_changed_after_its_check_sends_nothing_and_the_instruction_finishes(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file is read twice (checked, then sent). Edited in between, a row pass 1 accepted
    # used to vanish from pass 2 with exit 0.
    source = write_csv(tmp_path / "c.csv", TWO_ROWS)
    checked = import_module.validate

    def check_then_edit(*args: Any, **kwargs: Any) -> Any:
        found = checked(*args, **kwargs)
        source.write_text(EDITED.replace("not json", ""), encoding="utf-8")
        return found

    monkeypatch.setattr(import_module, "validate", check_then_edit)
    result = run(sandbox, "import", "customers", str(source))
    assert result.exit_code == 1
    assert "changed after its rows were checked: nothing was sent" in result.stderr
    assert stored_customers(sandbox) == []
    monkeypatch.undo()
    for _ in range(2):  # the instruction is safe to follow more than once
        again = run(None, *instruction(result, sandbox))
        assert again.exit_code == 0, again.output
    emails = sorted(c["email"] for c in stored_customers(sandbox))
    assert emails == ["ada@example.com", "alan@example.com", "bo@example.com"]


def test_a_file_changed_while_sending_is_reported_and_the_instruction_finishes(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_csv(tmp_path / "c.csv", TWO_ROWS)
    sending = import_module.drive

    async def send_then_edit(*args: Any, **kwargs: Any) -> Any:
        source.write_text(EDITED, encoding="utf-8")
        return await sending(*args, **kwargs)

    monkeypatch.setattr(import_module, "drive", send_then_edit)
    result = run(sandbox, "import", "customers", str(source))
    assert result.exit_code == 1
    assert "changed while its rows were being sent" in result.stderr
    monkeypatch.undo()
    source.write_text(EDITED.replace("not json", ""), encoding="utf-8")  # the user mends it
    again = run(None, *instruction(result, sandbox))
    assert again.exit_code == 0, again.output
    emails = sorted(c["email"] for c in stored_customers(sandbox))
    assert emails == ["ada@example.com", "alan@example.com", "bo@example.com"]
