"""Every recovery path of `finalpos import`, against a sandbox in a process of its own.

Each test ends by reading the server's records: how many, no duplicate, nothing missing, and the
exit status of every command. Where the import prints an instruction, the test follows it as
printed (the command between backticks), because the promise is that it is always safe.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sandbox_proc import (
    ROOT,
    SandboxProcess,
    duplicates,
    records,
    run_cli,
    sandbox_process,
    write_customers_csv,
)

# e2e (pyproject.toml): .ci/run runs it on Python 3.11 with the newest dependencies only; every
# recovery path of the CLI, run as subprocesses against a sandbox process.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and processes"),
]

NAMES = [f"user{n:04d}" for n in range(300)]


def target(sb: SandboxProcess) -> list[str]:
    return ["--api-key", sb.api_key, "--base-url", sb.url]


def emails(items: list[dict[str, Any]]) -> list[str]:
    return sorted(str(item["email"]) for item in items)


def expected(names: list[str]) -> list[str]:
    return sorted(f"{name}@example.com" for name in names)


def failed_rows(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0]["finalposFailedRows"] == 1
    return lines[1:]


def instruction(stderr: str) -> list[str]:
    """The one command the import told the user to run, as argv (after `finalpos`)."""
    found = re.findall(r"run `(finalpos [^`]+)`", " ".join(stderr.split()))
    assert len(found) == 1, f"expected exactly one instruction, got {found!r}:\n{stderr}"
    return shlex.split(found[0])[1:]


def follow(stderr: str, sb: SandboxProcess, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the printed instruction (its `$FINALPOS_API_KEY` is the user's key)."""
    argv = [sb.api_key if word == "$FINALPOS_API_KEY" else word for word in instruction(stderr)]
    return run_cli(*argv, env={"COLUMNS": "1000", "PWD": str(cwd)})


def set_exists(failed: Path, present: set[str]) -> int:
    """Set "exists" of every row marked unknown, as its user would after looking it up."""
    header, *rest = failed.read_text(encoding="utf-8").splitlines()
    answered, count = [], 0
    for line in rest:
        record = json.loads(line)
        if record["outcome"] == "unknown":
            assert record["exists"] is None
            record["exists"] = record["row"]["email"] in present
            count += 1
        answered.append(json.dumps(record))
    failed.write_text("\n".join([header, *answered]) + "\n", encoding="utf-8")
    return count


async def answer_unknown(failed: Path, sb: SandboxProcess) -> int:
    """Do what the instruction asks of rows marked unknown: look each one up, set "exists"."""
    present = {str(i["email"]) for i in await records(sb.url, sb.api_key)}
    return set_exists(failed, present)


async def finish(
    stderr: str, sb: SandboxProcess, cwd: Path, failed: Path
) -> subprocess.CompletedProcess[str]:
    """Follow the printed instruction to the end: answer what it asks, run what it says."""
    if 'set their "exists"' in " ".join(stderr.split()):
        assert await answer_unknown(failed, sb) > 0
    return follow(stderr, sb, cwd)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- 1. a journal belongs to one target ----------------------------------------------------------


async def test_a_journal_is_refused_for_another_sandbox_db_and_another_server(
    tmp_path: Path,
) -> None:
    source = tmp_path / "c.csv"
    write_customers_csv(source, NAMES[:50])
    trial = run_cli("--sandbox-db", str(tmp_path / "trial.db"), "import", "customers", str(source))
    assert trial.returncode == 0, trial.stderr

    other = run_cli("--sandbox-db", str(tmp_path / "other.db"), "import", "customers", str(source))
    assert other.returncode == 1
    text = " ".join(other.stderr.split())
    assert "trial.db" in text
    assert "other.db" in text
    assert "--journal" in text
    exported = run_cli("--sandbox-db", str(tmp_path / "other.db"), "export", "customers")
    assert exported.stdout == ""  # nothing was sent there

    async with sandbox_process() as sb:
        refused = run_cli(*target(sb), "import", "customers", str(source))
        assert refused.returncode == 1
        assert sb.url in " ".join(refused.stderr.split())
        assert await records(sb.url, sb.api_key) == []
        # The way on it names: a journal of its own.
        way_on = re.search(r"--journal (\S+?)\)", " ".join(refused.stderr.split()))
        assert way_on is not None
        own = run_cli(*target(sb), "import", "customers", str(source), "--journal", way_on[1])
        assert own.returncode == 0, own.stderr
        assert emails(await records(sb.url, sb.api_key)) == expected(NAMES[:50])


async def test_a_closed_port_is_an_error_not_a_success(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    write_customers_csv(source, NAMES[:100])
    port = free_port()
    result = run_cli(
        "--api-key", "k", "--base-url", f"http://127.0.0.1:{port}",
        "--max-retries", "0", "import", "customers", str(source),
    )  # fmt: skip
    assert result.returncode == 1
    text = " ".join(result.stderr.split())
    assert "unreachable" in text
    rows = failed_rows(tmp_path / "c.csv.failed.jsonl")
    assert len(rows) == 100
    assert {r["outcome"] for r in rows} == {"not sent"}
    attempts = int(re.search(r"HTTP attempts\s*│\s*(\d+)", result.stderr)[1])  # type: ignore[index]
    assert attempts < 40  # stopped early: at most the rows in flight when it gave up


async def test_a_restarted_in_memory_sandbox_on_the_same_port_is_not_resumed(
    tmp_path: Path,
) -> None:
    source = tmp_path / "c.csv"
    write_customers_csv(source, NAMES[:40])
    port = free_port()
    journal = tmp_path / "c.journal"
    async with sandbox_process(port=port) as sb:
        first = run_cli(*target(sb), "import", "customers", str(source), "--journal", str(journal))
        assert first.returncode == 0, first.stderr
    async with sandbox_process(port=port) as sb:  # same URL, same key, empty
        again = run_cli(*target(sb), "import", "customers", str(source), "--journal", str(journal))
        assert again.returncode == 1
        assert "404" in " ".join(again.stderr.split())
        assert await records(sb.url, sb.api_key) == []


# -- 2. a row's identity covers its content ----------------------------------------------------


async def test_a_rewritten_file_imports_new_rows_and_skips_or_duplicates_none(
    tmp_path: Path,
) -> None:
    source = tmp_path / "c.csv"
    async with sandbox_process() as sb:
        write_customers_csv(source, ["ann", "bob", "cid"])
        assert run_cli(*target(sb), "import", "customers", str(source)).returncode == 0
        write_customers_csv(source, ["zed", "yan", "bob", "cid"])
        second = run_cli(*target(sb), "import", "customers", str(source))
        assert second.returncode == 0, second.stderr
        assert re.search(r"created\s*│\s*2\b", second.stderr)
        items = await records(sb.url, sb.api_key)
    assert emails(items) == expected(["ann", "bob", "cid", "yan", "zed"])


async def test_a_keyed_row_whose_content_changed_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    source = tmp_path / "c.csv"
    async with sandbox_process() as sb:
        write_customers_csv(source, ["ann", "bob", "cid"])
        first = run_cli(*target(sb), "import", "customers", str(source), "--key", "email")
        assert first.returncode == 0
        text = source.read_text().replace("Bob,Test", "Robert,Test")
        source.write_text(text + "dan@example.com,Dan,Test\n")
        second = run_cli(*target(sb), "import", "customers", str(source), "--key", "email")
        assert second.returncode == 1
        flat = " ".join(second.stderr.split())
        assert "changed since they were imported" in flat
        assert "bob@example.com" in flat
        items = await records(sb.url, sb.api_key)
    assert emails(items) == expected(["ann", "bob", "cid"])  # dan waits: nothing was sent
    assert [i["firstName"] for i in items if i["email"] == "bob@example.com"] == ["Bob"]


async def test_repeated_keys_are_invalid_on_every_run_and_never_block_the_way_on(
    tmp_path: Path,
) -> None:
    source = tmp_path / "c.csv"
    # 200 rows; every tenth repeats the email of the row five before it, with another name.
    rows = [(f"r{n:03d}@example.com", f"R{n:03d}") for n in range(200)]
    for n in range(9, 200, 10):
        rows[n] = (rows[n - 5][0], f"Other{n:03d}")
    source.write_text(
        "email,firstName,lastName\n" + "".join(f"{e},{f},Test\n" for e, f in rows),
        encoding="utf-8",
    )
    unique = sorted({email for email, _ in rows})
    assert len(unique) == 180
    command = ["import", "customers", str(source), "--key", "email"]
    failed = tmp_path / "c.csv.failed.jsonl"

    def repeats_only(result: subprocess.CompletedProcess[str]) -> None:
        assert result.returncode == 1, result.stderr
        flat = " ".join(result.stderr.split())
        assert "changed since they were imported" not in flat
        assert "20 invalid row(s)" in flat
        assert "repeats the --key value 'r004@example.com' of line 6" in flat
        assert [r["outcome"] for r in failed_rows(failed)] == ["invalid"] * 20
        assert re.search(r"HTTP attempts\s*│\s*0\b", result.stderr)

    async with sandbox_process(db=tmp_path / "s.db") as sb:
        first = run_cli(*target(sb), *command, env={"COLUMNS": "1000"})
        assert first.returncode == 1, first.stderr
        assert "20 invalid row(s)" in first.stderr
        items = await records(sb.url, sb.api_key)
        assert emails(items) == unique
        assert {i["firstName"] for i in items if i["email"] == "r004@example.com"} == {"R004"}

        # Both ways on, each twice: the repeats stay invalid, nothing is "changed" or sent.
        for _ in range(2):
            repeats_only(follow(first.stderr, sb, tmp_path))
            repeats_only(run_cli(*target(sb), *command, env={"COLUMNS": "1000"}))
        assert emails(await records(sb.url, sb.api_key)) == unique

        # Fixed in the failed-rows file (a new email each): imported, once.
        header, *lines = failed.read_text(encoding="utf-8").splitlines()
        fixed = []
        for line in lines:
            record = json.loads(line)
            record["row"]["email"] = f"new-{record['row']['firstName'].lower()}@example.com"
            fixed.append(json.dumps(record))
        failed.write_text("\n".join([header, *fixed]) + "\n", encoding="utf-8")
        done = follow(first.stderr, sb, tmp_path)
        assert done.returncode == 0, done.stderr
        items = await records(sb.url, sb.api_key)
    assert len(items) == 200
    assert not duplicates(items)
    assert len({i["email"] for i in items}) == 200


# -- 3. and 5. rows whose answer was lost -------------------------------------------------------


async def test_lost_answers_without_a_key_are_found_by_their_fields_and_never_resent_blindly(
    tmp_path: Path,
) -> None:
    source = tmp_path / "c.csv"
    names = NAMES[:200]
    write_customers_csv(source, names)
    faults = "rate=0.15,kinds=503-after+reset-after"
    async with sandbox_process(faults=faults, seed=4, ignore_idempotency=True) as sb:
        first = run_cli(*target(sb), "import", "customers", str(source), env={"COLUMNS": "1000"})
        # Every answer lost after the record was made is found in the target by the fields
        # the row sent (the server ignores Idempotency-Key, so a resend would duplicate it).
        assert first.returncode == 0, first.stderr
        assert re.search(r"found in the target .*│\s*[1-9]", first.stderr), first.stderr
        items = await records(sb.url, sb.api_key)
        assert emails(items) == expected(names)
        assert not duplicates(items)

        # Running the command again sends nothing.
        again = run_cli(*target(sb), "import", "customers", str(source), env={"COLUMNS": "1000"})
        assert again.returncode == 0, again.stderr
        items = await records(sb.url, sb.api_key)
    assert emails(items) == expected(names)
    assert not duplicates(items)


async def test_lost_answers_with_a_natural_key_are_looked_up_even_when_keys_are_ignored(
    tmp_path: Path,
) -> None:
    source = tmp_path / "c.csv"
    names = [f"k{n:04d}" for n in range(2000)]
    write_customers_csv(source, names)
    faults = "rate=0.1,kinds=503+reset+503-after+reset-after"
    async with sandbox_process(faults=faults, seed=7, ignore_idempotency=True) as sb:
        first = run_cli(
            *target(sb), "import", "customers", str(source), "--key", "email",
            env={"COLUMNS": "1000"},
        )  # fmt: skip
        assert first.returncode in (0, 1), first.stderr
        assert "lookup in the target" in first.stderr
        assert re.search(r"found in the target .*│\s*[1-9]", first.stderr)
        result = first
        for _ in range(3):  # each later run resolves what is left by one more lookup
            if result.returncode == 0:
                break
            result = follow(result.stderr, sb, tmp_path)
        assert result.returncode == 0, result.stderr
        items = await records(sb.url, sb.api_key)
    assert len(items) == len(names)
    assert not duplicates(items)
    assert emails(items) == expected(names)


# -- 3. double Ctrl-C, then both ways on, in both orders -----------------------------------------


@pytest.mark.parametrize(
    ("order", "gaps"),
    [
        ("failed-file-first", [0.0]),
        ("rerun-first", [0.0]),
        # Presses a person makes: the second as the drain ends, a third while the summary is
        # written; neither may cost the failed-rows file or the instruction.
        ("failed-file-first", [0.05, 0.1]),
    ],
)
async def test_double_ctrl_c_prints_one_instruction_and_both_ways_on_are_safe(
    tmp_path: Path, order: str, gaps: list[float]
) -> None:
    source = tmp_path / "c.csv"
    names = [f"c{n:05d}" for n in range(3000)]
    write_customers_csv(source, names)
    async with sandbox_process(db=tmp_path / "s.db") as sb:
        command = [
            sys.executable, "-m", "finalpos_async.cli", *target(sb),
            "import", "customers", str(source), "--rate", "400", "--concurrency", "8",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "1000"}
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(await records(sb.url, sb.api_key)) < 300:
            assert proc.returncode is None, "the import ended before it could be interrupted"
            assert loop.time() < deadline, "the import made no progress"
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        for gap in gaps:
            await asyncio.sleep(gap)  # the gap between two presses is what is tested here
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        stderr = err.decode()
        # 130, or killed by a last press that came as the process was exiting, which a shell
        # reports as 130 too: either way after the summary and the instruction were written.
        assert proc.returncode in (130, -signal.SIGINT), stderr
        assert len(re.findall(r"To finish:", stderr)) == 1
        failed = tmp_path / "c.csv.failed.jsonl"
        assert failed_rows(failed)

        rerun = [*target(sb), "import", "customers", str(source)]
        printed = instruction(stderr)
        assert str(failed) in printed
        assert printed[printed.index("--rate") + 1] == "400.0"  # its own options repeated
        steps = [None, rerun] if order == "failed-file-first" else [rerun, None]
        for step in steps:
            if step is None:
                result = await finish(stderr, sb, tmp_path, failed)
            else:
                result = run_cli(*step, env={"COLUMNS": "1000"})
                if result.returncode == 1:  # rows cancelled in flight: their outcome is unknown
                    assert 'set their "exists"' in " ".join(result.stderr.split())
                    stderr = result.stderr  # the instruction of the latest run is the one to follow
                    continue
            assert result.returncode == 0, result.stderr
        # And once more each, for good measure: still nothing twice.
        assert run_cli(*rerun).returncode == 0
        assert follow(stderr, sb, tmp_path).returncode == 0
        items = await records(sb.url, sb.api_key)
    assert len(items) == len(names)
    assert not duplicates(items)


async def test_sigkill_then_resume_is_exact(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    names = [f"s{n:05d}" for n in range(2000)]
    write_customers_csv(source, names)
    async with sandbox_process(db=tmp_path / "s.db") as sb:
        command = [
            sys.executable, "-m", "finalpos_async.cli", *target(sb),
            "import", "customers", str(source), "--rate", "400",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(await records(sb.url, sb.api_key)) < 300:
            assert proc.returncode is None
            assert loop.time() < deadline
            await asyncio.sleep(0.05)
        proc.kill()
        await proc.wait()
        resumed = run_cli(*target(sb), "import", "customers", str(source))
        assert resumed.returncode == 0, resumed.stderr
        items = await records(sb.url, sb.api_key)
    assert emails(items) == expected(names)


# -- 4. errors no row can fix ----------------------------------------------------------------


async def test_a_wrong_api_key_stops_at_once_and_the_rows_wait_for_the_right_one(
    tmp_path: Path,
) -> None:
    source = tmp_path / "c.csv"
    names = NAMES[:300]
    write_customers_csv(source, names)
    async with sandbox_process(db=tmp_path / "s.db") as sb:
        wrong = run_cli(
            "--api-key", "sk_wrong", "--base-url", sb.url, "import", "customers", str(source),
            env={"COLUMNS": "1000"},
        )  # fmt: skip
        assert wrong.returncode == 1
        flat = " ".join(wrong.stderr.split())
        assert "Stopped early: AuthenticationError (401)" in flat
        attempts = int(re.search(r"HTTP attempts\s*│\s*(\d+)", wrong.stderr)[1])  # type: ignore[index]
        assert attempts <= 32  # the rows in flight when the first 401 came back, not 300
        assert "fix them" not in flat
        rows = failed_rows(tmp_path / "c.csv.failed.jsonl")
        assert len(rows) == len(names)
        assert {r["outcome"] for r in rows} == {"not sent"}
        # With the right key, the printed instruction finishes the job.
        done = follow(wrong.stderr, sb, tmp_path)
        assert done.returncode == 0, done.stderr
        items = await records(sb.url, sb.api_key)
    assert emails(items) == expected(names)


# -- 6. input errors -------------------------------------------------------------------------


def test_an_empty_file_is_an_error(tmp_path: Path) -> None:
    source = tmp_path / "empty.csv"
    source.write_bytes(b"")
    result = run_cli("import", "customers", str(source))
    assert result.returncode == 1
    assert f"{source} is empty" in " ".join(result.stderr.split())


def test_a_header_without_rows_is_an_error(tmp_path: Path) -> None:
    source = tmp_path / "h.csv"
    source.write_text("email,firstName,lastName\n")
    result = run_cli("import", "customers", str(source))
    assert result.returncode == 1
    assert "holds no rows" in result.stderr


def test_a_latin1_file_names_the_line_and_the_fix(tmp_path: Path) -> None:
    source = tmp_path / "l.csv"
    source.write_bytes("email,firstName,lastName\nj@example.com,J\u00f6rg,M\n".encode("latin-1"))
    result = run_cli("import", "customers", str(source))
    assert result.returncode == 1
    flat = " ".join(result.stderr.split())
    assert f"{source}, line 2: byte 0xf6 at column 16" in flat
    assert "--encoding cp1252" in flat
    fixed = run_cli("import", "customers", str(source), "--encoding", "cp1252")
    assert fixed.returncode == 0, fixed.stderr


async def test_a_broken_jsonl_line_keeps_its_text_and_its_line_through_reimports(
    tmp_path: Path,
) -> None:
    source = tmp_path / "c.jsonl"
    source.write_text(
        '{"email": "a@example.com", "firstName": "A", "lastName": "T"}\n'
        '{"email": "b@example.com", "firstName": "B", "lastName": "T",}\n'
        '{"email": "c@example.com", "firstName": "C"}\n'
    )
    async with sandbox_process(db=tmp_path / "s.db") as sb:
        first = run_cli(*target(sb), "import", "customers", str(source))
        assert first.returncode == 1
        failed = tmp_path / "c.jsonl.failed.jsonl"
        rows = failed_rows(failed)
        assert [(r["line"], r["outcome"]) for r in rows] == [(2, "invalid"), (3, "invalid")]
        assert rows[0]["text"].endswith('"lastName": "T",}')
        # Importing the failed file as is: same lines, and its failures replace it.
        again = run_cli(*target(sb), "import", "customers", str(failed))
        assert again.returncode == 1
        assert [r["line"] for r in failed_rows(failed)] == [2, 3]
        assert not (tmp_path / "c.jsonl.failed.jsonl.failed.jsonl").exists()
        # Fixed in place, it finishes the job.
        header, broken, missing = failed.read_text().splitlines()
        fixed_broken = json.loads(broken)
        fixed_broken["text"] = fixed_broken["text"].replace(",}", "}")
        fixed_missing = json.loads(missing)
        fixed_missing["row"]["lastName"] = "T"
        failed.write_text("\n".join([header, json.dumps(fixed_broken), json.dumps(fixed_missing)]))
        done = run_cli(*target(sb), "import", "customers", str(failed))
        assert done.returncode == 0, done.stderr
        assert failed_rows(failed) == []  # emptied, not removed: running it again is harmless
        assert run_cli(*target(sb), "import", "customers", str(failed)).returncode == 0
        items = await records(sb.url, sb.api_key)
    assert emails(items) == ["a@example.com", "b@example.com", "c@example.com"]


def test_export_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    source = tmp_path / "c.csv"
    write_customers_csv(source, [f"p{n:05d}" for n in range(3000)])
    assert run_cli("--sandbox-db", str(db), "import", "customers", str(source)).returncode == 0
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "finalpos_async.cli",
            "--sandbox-db",
            str(db),
            "export",
            "customers",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["email"].startswith("p")
    proc.stdout.close()  # as `head -1` does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141
    assert b"Broken pipe" not in err
    assert b"error" not in err
