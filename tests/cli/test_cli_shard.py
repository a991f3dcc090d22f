"""`finalpos import --shard K/N` and `--rate R --redis-url URL`: N processes split one file and
share one cap, and every row ends up in the target exactly once, on every recovery path.

The shards run as real CLI processes against one sandbox (in a thread of this process, on
127.0.0.1), the shared cap on a real redis-server (the `redis_servers` fixture).
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer
from sandbox_proc import ROOT, run_cli
from test_cli_import import failed_rows, stored_customers

from finalpos_async.cli._shard import Shard, parse_shard, shard_of, shared_job_id
from finalpos_async.sandbox import Sandbox

StartRedis = Any  # the `redis_servers` fixture

# The tests marked e2e (pyproject.toml) run CLI processes against a sandbox and redis-server;
# .ci/run runs them on Python 3.11 with the newest dependencies only. The partition's own tests
# (the pinned hash above all) run on every Python.


def target(sb: Sandbox) -> list[str]:
    return ["--api-key", sb.api_key, "--base-url", sb.url]


def write_rows(path: Path, count: int, *, bad_lines: Sequence[int] = ()) -> Path:
    """`count` customers (email u{i}@example.com); the data rows listed in `bad_lines` (1 = the
    first data row) lack their names, so they are invalid."""
    lines = ["email,firstName,lastName"]
    for i in range(1, count + 1):
        names = ",," if i in bad_lines else ",Ann,Test"
        lines.append(f"u{i}@example.com{names}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "finalpos_async.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={"PYTHONPATH": str(ROOT), "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def emails(sb: Sandbox) -> collections.Counter[str]:
    return collections.Counter(c["email"] for c in stored_customers(sb))


# --- the partition itself -------------------------------------------------------------------


def test_shard_of_is_pinned_so_machines_and_versions_agree() -> None:
    # Changing the hash would move rows between shards whose journals already hold them.
    assert [shard_of(f"u{i}@example.com", 4) for i in range(1, 13)] == [
        4, 2, 4, 1, 3, 2, 4, 1, 1, 2, 3, 2
    ]  # fmt: skip
    assert shard_of("anything", 1) == 1


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_every_identity_falls_in_exactly_one_shard_and_they_are_even(count: int) -> None:
    identities = [f"customer-{i}" for i in range(20_000)]
    shards = [Shard(k, count) for k in range(1, count + 1)]
    owners = [[s.index for s in shards if s.owns(i)] for i in identities]
    assert all(len(found) == 1 for found in owners)
    sizes = collections.Counter(found[0] for found in owners)
    assert set(sizes) == set(range(1, count + 1))
    mean = len(identities) / count
    assert all(abs(size - mean) < 0.05 * mean for size in sizes.values()), sizes


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("4", "give it as K/N"),
        ("a/b", "give it as K/N"),
        ("0/4", "between 1 and N"),
        ("5/4", "between 1 and N"),
        ("1/0", "between 1 and N"),
    ],
)
def test_a_bad_shard_is_refused_with_the_form_to_use(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_shard(text)
    result = run_cli(
        "import", "customers", str(ROOT / "examples" / "customers.csv"), "--shard", text
    )
    assert result.returncode == 2
    assert says in result.stderr
    assert "--shard" in result.stderr


def test_all_shards_of_one_import_share_a_job_id() -> None:
    one = shared_job_id("https://api", "customers.create", "email", "c.csv")
    assert one == shared_job_id("https://api", "customers.create", "email", "c.csv")
    assert one != shared_job_id("https://api", "customers.create", None, "c.csv")


# --- shards as processes --------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("key", [["--key", "email"], []], ids=["by-key", "by-content"])
def test_three_shards_import_every_row_exactly_once(
    sandbox: Sandbox, tmp_path: Path, key: list[str]
) -> None:
    bad = (5, 17, 40, 41, 99)
    file = write_rows(tmp_path / "c.csv", 240, bad_lines=bad)
    procs = [
        start_cli(*target(sandbox), "import", "customers", str(file), *key, "--shard", f"{k}/3")
        for k in (1, 2, 3)
    ]
    results = [finish(p) for p in procs]
    assert all(code == 1 for code, _ in results), results  # the bad rows are not in the target
    assert sum(emails(sandbox).values()) == 235
    assert set(emails(sandbox).values()) == {1}
    for k, (_, out) in enumerate(results, start=1):
        assert f"Import summary (shard {k}/3)" in out
        assert (tmp_path / f"c.csv.shard-{k}-of-3.journal").exists()
    invalid = [
        r["line"]
        for k in (1, 2, 3)
        if (tmp_path / f"c.csv.shard-{k}-of-3.failed.jsonl").exists()
        for r in failed_rows(tmp_path / f"c.csv.shard-{k}-of-3.failed.jsonl")
    ]
    assert sorted(invalid) == [line + 1 for line in bad]  # each reported by exactly one shard

    # Run again, and again with another N: nothing new (journals; shared idempotency keys).
    for count in (3, 2):
        again = [
            start_cli(
                *target(sandbox), "import", "customers", str(file), *key, "--shard", f"{k}/{count}"
            )
            for k in range(1, count + 1)
        ]
        assert all(finish(p)[0] == 1 for p in again)
        assert sum(emails(sandbox).values()) == 235


def import_shards(sb: Sandbox, file: Path, count: int, *extra: str) -> list[int]:
    """Run shards 1..count of `file` one after the other; their exit statuses."""
    statuses = []
    for k in range(1, count + 1):
        args = ["import", "customers", str(file), *extra, "--shard", f"{k}/{count}"]
        statuses.append(run_cli(*target(sb), *args).returncode)
    return statuses


@pytest.mark.e2e
def test_a_shards_failed_rows_file_continues_that_shard_only(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    def email(i: int) -> str:
        return f"u{i}@example.com"

    # Two bad rows, both reported by shard 2 (by their line; data row i is on line i + 1):
    # once fixed, row `stays` hashes to shard 2, row `moves` to shard 1.
    two = Shard(2, 2)
    stays = next(i for i in range(1, 500) if two.owns_line(i + 1) and two.owns(email(i)))
    moves = next(i for i in range(1, 500) if two.owns_line(i + 1) and not two.owns(email(i)))
    file = write_rows(tmp_path / "c.csv", 500, bad_lines=[stays, moves])
    assert import_shards(sandbox, file, 2, "--key", "email") == [0, 1]
    failed = tmp_path / "c.csv.shard-2-of-2.failed.jsonl"
    assert sorted(r["line"] for r in failed_rows(failed)) == sorted([stays + 1, moves + 1])
    assert json.loads(failed.read_text().splitlines()[0])["shard"] == "2/2"

    wrong = run_cli(*target(sandbox), "import", "customers", str(failed), "--shard", "1/2")
    assert wrong.returncode == 1
    assert "holds the failed rows of shard 2/2" in wrong.stderr
    # Fix both rows (as the instruction says, the same fix as below) and import the file.
    records = [json.loads(t) for t in failed.read_text().splitlines()]
    for record in records[1:]:
        record["row"].update(firstName="Ann", lastName="Test")
    failed.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = run_cli(*target(sandbox), "import", "customers", str(failed))
    assert result.returncode == 1
    assert emails(sandbox)[email(stays)] == 1
    assert emails(sandbox)[email(moves)] == 0  # shard 1 owns it now: shard 2 must not take it
    assert "now belongs to shard 1/2, not 2/2" in result.stderr
    assert [r["line"] for r in failed_rows(failed)] == [moves + 1]
    # As the message says: the fixed original file, shard 1. Every row once.
    file = write_rows(tmp_path / "c.csv", 500)
    assert import_shards(sandbox, file, 2, "--key", "email") == [0, 0]
    assert sum(emails(sandbox).values()) == 500
    assert set(emails(sandbox).values()) == {1}


# --- the shared cap -------------------------------------------------------------------------


@pytest.mark.e2e
def test_two_shards_share_one_rate_through_redis(
    sandbox: Sandbox, tmp_path: Path, redis_servers: StartRedis
) -> None:
    redis: RedisServer = redis_servers(password="s3cret-pw")
    file = write_rows(tmp_path / "c.csv", 160)
    rate = 40
    common = ["--rate", str(rate), "--redis-url", redis.url, "--redis-key", "shard-test"]
    started = time.monotonic()
    procs = [
        start_cli(*target(sandbox), "import", "customers", str(file), "--shard", f"{k}/2", *common)
        for k in (1, 2)
    ]
    results = [finish(p) for p in procs]
    took = time.monotonic() - started
    assert [code for code, _ in results] == [0, 0], results
    assert sum(emails(sandbox).values()) == 160
    # One bucket of 40/s, burst 4 (the import's default, 0.1 s worth), for both: at least
    # (160 - 4 - 2) / 40 s. (A bucket per process would let it finish in half that.)
    assert took >= (160 - 4 - 2) / rate
    for _, out in results:
        assert "shared through RedisRateLimiter('redis://:***@127.0.0.1" in out
        assert "s3cret-pw" not in out


@pytest.mark.e2e
def test_redis_down_at_start_stops_before_anything_is_sent(
    sandbox: Sandbox, tmp_path: Path, redis_servers: StartRedis
) -> None:
    redis: RedisServer = redis_servers(password="s3cret-pw")
    redis.stop()
    file = write_rows(tmp_path / "c.csv", 20)
    result = run_cli(
        *target(sandbox), "import", "customers", str(file), "--rate", "10", "--redis-url", redis.url
    )
    assert result.returncode == 1
    assert f"Redis rate limiter at 127.0.0.1:{redis.port} unavailable" in result.stderr
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert stored_customers(sandbox) == []


@pytest.mark.e2e
def test_redis_down_mid_run_stops_the_import_and_the_rerun_finishes_it(
    sandbox: Sandbox, tmp_path: Path, redis_servers: StartRedis
) -> None:
    redis: RedisServer = redis_servers()
    file = write_rows(tmp_path / "c.csv", 300)
    args = [
        *target(sandbox),
        "import",
        "customers",
        str(file),
        "--key",
        "email",
        "--rate",
        "50",
        "--redis-url",
        redis.url,
        "--redis-key",
        "mid-run",
    ]
    proc = start_cli(*args)
    deadline = time.monotonic() + 60
    while len(stored_customers(sandbox)) < 80:  # the burst, then paced rows
        assert time.monotonic() < deadline
        assert proc.poll() is None
        time.sleep(0.05)  # polling the target, bounded by the deadline
    redis.stop()
    code, out = finish(proc)
    assert code == 1
    assert "Stopped early" in out
    assert "Redis rate limiter" in out
    created = len(stored_customers(sandbox))
    assert 80 <= created < 300
    records = failed_rows(tmp_path / "c.csv.failed.jsonl")
    assert {r["outcome"] for r in records} <= {"not sent"}
    assert len(records) + created == 300  # nothing lost: every row is in one place or the other

    redis.start()
    again = run_cli(*args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sum(emails(sandbox).values()) == 300
    assert set(emails(sandbox).values()) == {1}


@pytest.mark.e2e
def test_redis_url_needs_a_rate_and_a_redis_scheme(tmp_path: Path) -> None:
    file = write_rows(tmp_path / "c.csv", 3)
    no_rate = run_cli("import", "customers", str(file), "--redis-url", "redis://127.0.0.1:1/0")
    assert no_rate.returncode == 2
    assert "give --rate too" in no_rate.stderr
    scheme = run_cli(
        "import", "customers", str(file), "--rate", "5", "--redis-url", "http://:pw-in-url@host/0"
    )
    assert scheme.returncode == 2
    assert "redis://, rediss:// or unix://" in scheme.stderr
    assert "pw-in-url" not in scheme.stderr
    # From the environment with no --rate: a note, and the import runs unpaced.
    env = run_cli("import", "customers", str(file), env={"FINALPOS_REDIS_URL": "redis://x:1/0"})
    assert env.returncode == 0, env.stderr
    assert "FINALPOS_REDIS_URL is ignored" in env.stderr


@pytest.mark.e2e
def test_the_printed_instruction_names_the_redis_password_by_its_variable(
    sandbox: Sandbox, tmp_path: Path, redis_servers: StartRedis
) -> None:
    redis: RedisServer = redis_servers(password="s3cret-pw")
    file = write_rows(tmp_path / "c.csv", 10, bad_lines=[3])
    result = run_cli(
        *target(sandbox),
        "import",
        "customers",
        str(file),
        "--rate",
        "100",
        "--redis-url",
        redis.url,
        "--shard",
        "1/1",
    )
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert '--redis-url "$FINALPOS_REDIS_URL"' in out
    assert "--shard" not in out.split("run `")[-1]  # the failed-rows file's header carries it
    assert "s3cret-pw" not in out


@pytest.mark.e2e
def test_burst_sets_how_many_requests_go_back_to_back(sandbox: Sandbox, tmp_path: Path) -> None:
    file = write_rows(tmp_path / "c.csv", 21)
    result = run_cli(
        *target(sandbox), "import", "customers", str(file), "--rate", "20", "--burst", "1"
    )
    assert result.returncode == 0, result.stderr
    # The job's own clock (the summary's "elapsed"): 1 at once, then 20 at 20/s.
    elapsed = re.search(r"elapsed\W+([\d.]+) s", result.stderr)
    assert elapsed is not None, result.stderr
    assert float(elapsed[1]) >= 0.9
    assert sum(emails(sandbox).values()) == 21
    alone = run_cli("import", "customers", str(file), "--burst", "5")
    assert alone.returncode == 2
    assert "give --rate too" in alone.stderr
