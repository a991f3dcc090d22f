"""`finalpos import --journal postgresql://...`: the journal in PostgreSQL, its password never
printed nor recorded, and a clear error naming the extra when psycopg is missing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cli_run import run
from postgres_server import PASSWORD, PostgresServer

from finalpos_async.sandbox import Sandbox


def write_csv(path: Path) -> None:
    path.write_text(
        "email,firstName,lastName\n"
        "ann@example.com,Ann,Lee\n"
        "bob@example.com,Bob,Ray,one cell too many\n"
        "cy@example.com,Cy,Fox\n",
        encoding="utf-8",
    )


def test_an_import_journals_into_postgres_and_never_shows_the_password(
    tmp_path: Path, postgres_cluster: PostgresServer
) -> None:
    schema = postgres_cluster.schema()
    url = postgres_cluster.url(schema)
    bare = postgres_cluster.url(schema, password=None)
    source = tmp_path / "customers.csv"
    write_csv(source)
    with Sandbox().run_in_thread() as sb:
        first = run(sb, "import", "customers", str(source), "--key", "email", "--journal", url)
        # The failed-rows file records the journal, without the password: importing it (or
        # the same command) gets the password from PGPASSWORD, as libpq does.
        again = run(
            sb,
            "import",
            "customers",
            str(source),
            "--key",
            "email",
            "--journal",
            bare,
            env={"PGPASSWORD": PASSWORD},
        )
    assert first.exit_code == 1, first.output  # the invalid row
    assert f"Journal: {bare}" in first.output.replace("\n", "")
    assert PASSWORD not in first.output
    failed = tmp_path / "customers.csv.failed.jsonl"
    assert json.loads(failed.read_text().splitlines()[0])["journal"] == bare
    assert again.exit_code == 1, again.output
    assert "already imported (journal)" in again.output
    assert PASSWORD not in again.output


def test_without_psycopg_the_import_names_the_extra_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    source = tmp_path / "customers.csv"
    write_csv(source)
    with Sandbox().run_in_thread() as sb:
        result = run(
            sb, "import", "customers", str(source), "--journal", "postgresql://u:pw1234@db/x"
        )
        assert sb.storage is not None
        assert sb.storage.list("CustomerDto", 0, None) == []
    assert result.exit_code == 1
    assert "pip install 'finalpos[postgres]'" in result.output  # brackets kept: not markup
    assert "pw1234" not in result.output
