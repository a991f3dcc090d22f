"""`finalpos import ... --worker`: its options, one worker taking every chunk of a job, and a
chunk's failed rows imported (after the fix) without --worker, continuing the same job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import run
from postgres_server import PASSWORD

from finalpos_async.sandbox import Sandbox


def write_csv(path: Path, rows: int, bad: int | None = None) -> None:
    lines = ["email,firstName,lastName"]
    for n in range(rows):
        lines.append(f"{'' if n == bad else f'c{n}@example.com'},C,{n}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--worker"], "give --journal postgresql://user@host/db"),
        (["--worker", "--journal", "a.journal"], "give --journal postgresql://"),
        (["--chunks", "4"], "--chunks is for --worker: add --worker, or drop --chunks"),
        (["--lease", "10"], "--lease is for --worker"),
        (
            ["--shard", "1/2", "--journal", "postgresql://u@db/x"],
            "run each process with --worker instead of --shard",
        ),
        (
            ["--worker", "--shard", "1/2", "--journal", "postgresql://u@db/x"],
            "--worker and --shard exclude each other",
        ),
        (
            ["--worker", "--validate-only", "--journal", "postgresql://u@db/x"],
            "--worker and --validate-only exclude each other",
        ),
    ],
)
def test_worker_options_are_checked_before_anything_runs(
    tmp_path: Path, words: list[str], message: str
) -> None:
    source = tmp_path / "customers.csv"
    write_csv(source, 2)
    with Sandbox().run_in_thread() as sb:
        result = run(sb, "import", "customers", str(source), *words)
        assert sb.storage is not None
        assert sb.storage.list("CustomerDto", 0, None) == []
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_one_worker_imports_every_chunk_and_its_failed_rows_continue_the_job(
    tmp_path: Path, postgres_url: str
) -> None:
    source = tmp_path / "customers.csv"
    write_csv(source, 40, bad=7)
    with Sandbox().run_in_thread() as sb:
        worker = ["--key", "email", "--journal", postgres_url, "--worker", "--chunks", "3"]
        first = run(sb, "import", "customers", str(source), *worker)
        failed = list(tmp_path.glob("customers.csv.chunk-*-of-3.failed.jsonl"))
        assert len(failed) == 1  # the chunk of the bad row
        header, row = (json.loads(line) for line in failed[0].read_text().splitlines())
        assert header.get("shard") is None
        assert PASSWORD not in failed[0].read_text()
        row["row"]["email"] = "c7@example.com"  # the fix: the missing key given
        failed[0].write_text(json.dumps(header) + "\n" + json.dumps(row) + "\n")
        fixed = run(sb, "import", "customers", str(failed[0]), env={"PGPASSWORD": PASSWORD})
        again = run(sb, "import", "customers", str(source), *worker)  # a worker joining late
        jobs = run(None, "jobs", "--journal", postgres_url)
        job_id = json.loads(failed[0].read_text().splitlines()[0])["job_id"]
        chunks = run(None, "jobs", job_id[:8], "--journal", postgres_url)
        unknown = run(None, "jobs", "feedbeef", "--journal", postgres_url)
        assert sb.storage is not None
        emails = sorted(r["email"] for r in sb.storage.list("CustomerDto", 0, None))
    text = " ".join(first.output.split())
    assert first.exit_code == 1, first.output  # one row is not in the target
    assert "all 3 chunks done" in text
    assert "1 invalid" in text
    assert "39 created" in text
    assert "FILE.chunk-K-of-N.failed.jsonl" in text
    assert fixed.exit_code == 0, fixed.output
    assert emails == sorted(f"c{n}@example.com" for n in range(40))
    assert again.exit_code == 1  # the job is done: nothing claimed, the same summary
    assert "all 3 chunks done" in " ".join(again.output.split())
    assert "Chunk 1/3:" not in again.output
    listing = " ".join(jobs.output.split())
    assert jobs.exit_code == 0, jobs.output
    assert job_id[:12] in listing
    assert "3 done" in listing
    assert "39 created" in listing
    assert PASSWORD not in jobs.output
    assert chunks.exit_code == 0, chunks.output
    assert f"Job {job_id}: 3 done" in chunks.output
    assert [line.split("│")[2].strip() for line in chunks.output.splitlines() if "/3 " in line] == [
        "done"
    ] * 3
    assert unknown.exit_code == 2
    assert "no job in" in unknown.output
    assert "start with 'feedbeef'" in unknown.output


def test_a_shared_cap_is_each_api_key_s_own_unless_a_redis_key_is_given() -> None:
    from finalpos_async._redis_limit import DEFAULT_REDIS_KEY, RedisRateLimiter
    from finalpos_async.cli._connect import Settings

    def key_of(api_key: str, redis_key: str = DEFAULT_REDIS_KEY) -> str:
        settings = Settings(
            api_key=api_key,
            base_url=None,
            sandbox_db=None,
            max_retries=None,
            timeout=None,
            rate_limit=50,
            redis_url="redis://127.0.0.1:1/0",
            redis_key=redis_key,
        )
        limiter = settings.limiter()
        assert isinstance(limiter, RedisRateLimiter)
        return repr(limiter)

    one, two = key_of("sk_tenant_one_secret"), key_of("sk_tenant_two_secret")
    assert one != two
    assert f"key='{DEFAULT_REDIS_KEY}:" in one
    assert "sk_tenant_one_secret" not in one
    assert key_of("sk_tenant_one_secret") == one  # every process of a tenant shares it
    assert "key='shared'" in key_of("sk_tenant_one_secret", "shared")


def test_a_worker_needs_an_api_every_worker_can_reach(tmp_path: Path) -> None:
    source = tmp_path / "customers.csv"
    write_csv(source, 2)
    result = run(
        None, "import", "customers", str(source), "--worker", "--journal", "postgresql://u@db/x"
    )
    assert result.exit_code == 1
    assert "an embedded sandbox lives in this one: give --api-key and --base-url" in " ".join(
        result.output.split()
    )


def test_a_job_done_whose_file_grew_is_opened_again_and_only_new_rows_are_sent(
    tmp_path: Path, postgres_url: str
) -> None:
    source = tmp_path / "customers.csv"
    write_csv(source, 10)
    worker = ["--key", "email", "--journal", postgres_url, "--worker", "--chunks", "2"]
    with Sandbox().run_in_thread() as sb:
        first = run(sb, "import", "customers", str(source), *worker)
        write_csv(source, 14)  # four rows added
        second = run(sb, "import", "customers", str(source), *worker)
        assert sb.storage is not None
        emails = sorted(r["email"] for r in sb.storage.list("CustomerDto", 0, None))
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    text = " ".join(second.output.split())
    assert "changed since its job was done: every chunk is open again" in text
    assert "4 created" in text
    assert "10 skipped" in text
    assert emails == sorted(f"c{n}@example.com" for n in range(14))


def test_a_worker_with_another_file_than_the_running_job_s_is_refused(
    tmp_path: Path, postgres_url: str
) -> None:
    from finalpos_async.bulk import ChunkBoard, Work
    from finalpos_async.cli._shard import shared_job_id

    source = tmp_path / "customers.csv"
    write_csv(source, 4)
    with Sandbox().run_in_thread() as sb, ChunkBoard(postgres_url) as board:
        assert sb.url is not None
        job = shared_job_id(sb.url, "customers.create", "email", source.name)
        board.publish(Work(work_id=job, chunks=2, description={"digest": "0badc0ffee" * 6}))
        assert board.claim(seconds=30) is not None  # another worker is at it
        result = run(
            sb, "import", "customers", str(source), "--key", "email",
            "--journal", postgres_url, "--worker", "--chunks", "2",
        )  # fmt: skip
        assert sb.storage is not None
        assert sb.storage.list("CustomerDto", 0, None) == []
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "is not the file the other workers of job" in text
    assert "theirs 0badc0ffee0b" in text


def test_a_chunk_refused_before_sending_is_given_back_not_done(
    tmp_path: Path, postgres_url: str
) -> None:
    source = tmp_path / "customers.csv"
    write_csv(source, 6)
    worker = ["--key", "email", "--journal", postgres_url, "--worker", "--chunks", "1"]
    with Sandbox().run_in_thread() as sb:
        assert run(sb, "import", "customers", str(source), *worker).exit_code == 0
        source.write_text(source.read_text().replace("c3@example.com,C,3", "c3@example.com,X,3"))
        changed = run(sb, "import", "customers", str(source), *worker)
        status = run(None, "jobs", "--journal", postgres_url)
    assert changed.exit_code == 1, changed.output
    assert "row(s) changed since they were imported (nothing was sent)" in " ".join(
        changed.output.split()
    )
    assert "1 open" in " ".join(status.output.split())  # given back, not done
