"""What the journal's write-ahead intents cost per row: `finalpos import` CPU, before and after.

    git worktree add --detach /tmp/finalpos-before b9881d2    # the code before the intents
    python benchmarks/write_ahead.py --before /tmp/finalpos-before          # about 6 minutes
    python benchmarks/write_ahead.py --quick --make-before                  # under 60 s

`--make-before` runs that `git worktree add` itself when PATH does not exist yet (b9881d2 is the
last commit before write-ahead intents and journal-counted identities; `--before-commit` picks
another). The "new" tree is the one holding this script (`--after` picks another).

**CLI runs.** For each repetition, and for `--key email` and without (content identity), the
same CSV of `--rows` unique rows (`scripts/make_example_csv.py`) is imported by
`python -m finalpos_async.cli --api-key K --base-url URL import customers FILE.csv` as a child
process with `PYTHONPATH` set to the old tree, then to the new one (ABAB...), each against a fresh
sandbox process (`python -m finalpos_async.sandbox --port 0 --quiet`, always the new tree's, so
the server is the same for both) and with a fresh journal. The figure is the child's CPU time,
user + sys from `os.wait4`, divided by the rows; interpreter start-up and the CLI's first pass
over the file are included, as a user sees them. Printed: min/median/max over repetitions, the
ratio new/old of the medians and the range of the paired ratios (same repetition), plus rows/s
(wall; bound by the sandbox on shared cores) and the KiB the child wrote to disk per row
(`ru_oublock`). A run that does not exit 0 with every row created fails the script.

**Journal micro-benchmark.** The journal alone, in a child interpreter per variant and tree, on
the same disk (a temporary folder in the repository; its filesystem is printed from `df -T`):
the old `Journal.record` per row (batched commits, `synchronous=NORMAL`) against the new
`Journal.record_intents` per window of 64 rows (one `synchronous=FULL` commit each) +
`record` per row + `count_seen` per row; also each with the `lookup` per row that the engine's
intake makes in both. CPU (process time) and wall time per row.

`--profile` adds one run per tree under a CPU-time sampler (SIGPROF; py-spy counts a thread
blocked in fsync as busy) and prints where the CLI's CPU goes, with the journal methods'
inclusive share in µs per row.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _sandbox_process import ROOT, start_sandbox, stop_process
from bulk_memory import make_csv

BEFORE_COMMIT = "b9881d2"
GOAL = 1.10  # issue: the write-ahead may cost at most +10 % CPU per row
KEYS = ("email", None)
WINDOW = 64  # BULK_INTENT_WINDOW: max(concurrency, 64) rows share one intent commit

# Journal micro-benchmark variants: (tree, per-row calls).
MICRO = (
    ("old", "record"),
    ("new", "record"),
    ("new", "intents+record"),
    ("new", "seen+intents+record"),
    ("old", "lookup+record"),
    ("new", "lookup+seen+intents+record"),
)
JOURNAL_FUNCTIONS = ("record_intents", "count_seen", "lookup", "record", "flush", "_commit")


# -- trees -----------------------------------------------------------------------------------


def _tree_env(tree: Path) -> dict[str, str]:
    """The environment of a child that imports `finalpos_async` from `tree`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINALPOS_")}
    env["PYTHONPATH"] = str(tree)
    return env


def check_tree(tree: Path, scratch: Path) -> str:
    """The `finalpos_async` package a child imports with `tree` on PYTHONPATH (must be tree's)."""
    found = subprocess.run(
        [sys.executable, "-c", "import finalpos_async; print(finalpos_async.__file__)"],
        cwd=scratch,  # not the repository: `-m`/`-c` put the working directory first
        env=_tree_env(tree),
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not found.startswith(str(tree.resolve()) + os.sep):
        sys.exit(f"{tree}: a child imports finalpos_async from {found or 'nowhere'}, not this tree")
    return found


def make_before(path: Path, commit: str) -> None:
    """`git worktree add --detach PATH COMMIT` in this repository."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit], check=True
    )


def _revision(tree: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()[:90] or "not a git tree"


def filesystem(path: Path) -> str:
    """`df -T PATH`: filesystem type and device."""
    try:
        line = subprocess.run(
            ["df", "-T", str(path)], capture_output=True, text=True, check=True
        ).stdout.splitlines()[-1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"
    fields = line.split()
    return f"{fields[1]} on {fields[0]}" if len(fields) > 1 else line


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


# -- child processes -------------------------------------------------------------------------


def run_child(command: list[str], *, tree: Path, cwd: Path, log: Path) -> dict[str, Any]:
    """Run `command` with `tree` on PYTHONPATH; its exit code, wall time and rusage (wait4)."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=_tree_env(tree),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        started = time.perf_counter()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return {
        "exit": proc.returncode,
        "wall_s": wall,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "written_kib": usage.ru_oublock * 512 / 1024,
    }


@contextmanager
def fresh_sandbox() -> Iterator[str]:
    proc, url = start_sandbox()
    try:
        yield url
    finally:
        stop_process(proc)


def cli_import(
    tree: Path, source: Path, key: str | None, folder: Path, api_key: str, rows: int
) -> dict[str, Any]:
    """One `finalpos import customers SOURCE` by `tree` against a fresh sandbox."""
    folder.mkdir()
    command = [sys.executable, "-m", "finalpos_async.cli", "--api-key", api_key]
    with fresh_sandbox() as url:
        command += ["--base-url", url, "import", "customers", str(source)]
        command += ["--journal", str(folder / "run.journal")]
        command += ["--failed-file", str(folder / "failed.jsonl")]
        command += ["--key", key] if key else []
        log = folder / "output.txt"
        result = run_child(command, tree=tree, cwd=folder, log=log)
    output = log.read_text(errors="replace")
    created = re.search(r"created\s*│\s*([\d,]+)", output)
    result["created"] = int(created.group(1).replace(",", "")) if created else None
    if result["exit"] != 0 or result["created"] != rows:
        sys.exit(f"{' '.join(command)}\nexit {result['exit']}, output:\n{output[-3000:]}")
    result["cpu_us_per_row"] = (result["user_s"] + result["sys_s"]) / rows * 1e6
    return result


def startup_cpu(tree: Path, folder: Path) -> float:
    """CPU seconds of `python -m finalpos_async.cli --help` (interpreter and CLI start)."""
    command = [sys.executable, "-m", "finalpos_async.cli", "--help"]
    result = run_child(command, tree=tree, cwd=folder, log=folder / "help.txt")
    return float(result["user_s"] + result["sys_s"])


# -- journal micro-benchmark (runs in a child with one tree on PYTHONPATH) --------------------


def micro_child(variant: str, rows: int, folder: Path) -> None:
    """Time `variant`'s journal calls for `rows` rows; print one JSON line."""
    import hashlib
    import resource

    import finalpos_async
    from finalpos_async.bulk import Journal, JournalBinding

    calls = set(variant.split("+"))
    # Keys land at random places in the journal's B-tree, as emails of a real file and content
    # digests do (consecutive keys would touch one page per commit and write far less).
    digests = [hashlib.sha256(b"%d" % n).hexdigest()[:32] for n in range(rows)]
    keys = [f"{d[:10]}.{n}@example.com" for n, d in enumerate(digests)]
    idems = [f"fp-0123456789abcdef-{d}" for d in digests]
    ids = [f"cus_{n:024d}" for n in range(rows)]
    binding = JournalBinding(
        target="http://127.0.0.1:1", credentials="0" * 16, operation="customers.create",
        identity="key=email",
    )  # fmt: skip
    journal = Journal(folder / "micro.journal")
    journal.open()
    journal.bind(binding)
    intent: Any = None
    if "intents" in calls:
        from finalpos_async.bulk import Intent

        intent = Intent
    looks, seen = "lookup" in calls, "seen" in calls
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for start in range(0, rows, WINDOW):
        window = range(start, min(start + WINDOW, rows))
        for n in window:
            if looks:
                journal.lookup(keys[n])
            if seen:
                journal.count_seen(keys[n])
        if intent is not None:
            journal.record_intents(intent(keys[n], digests[n], idems[n]) for n in window)
        for n in window:
            journal.record(
                keys[n], "succeeded", digest=digests[n], idempotency_key=idems[n],
                created_id=ids[n], attempts=1,
            )  # fmt: skip
    journal.close()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "variant": variant,
                "rows": rows,
                "cpu_us_per_row": cpu / rows * 1e6,
                "wall_us_per_row": wall / rows * 1e6,
                "written_kib_per_row": (usage.ru_oublock - usage0.ru_oublock) * 0.5 / rows,
                "package": finalpos_async.__file__,
            }
        )
    )


def micro(tree: Path, variant: str, rows: int, folder: Path) -> dict[str, Any]:
    folder.mkdir()
    command = [sys.executable, str(Path(__file__).resolve()), "--micro-child", variant]
    command += ["--micro-rows", str(rows), "--micro-dir", str(folder)]
    log = folder / "output.txt"
    result = run_child(command, tree=tree, cwd=folder, log=log)
    output = log.read_text()
    if result["exit"] != 0:
        sys.exit(f"journal micro-benchmark {variant} in {tree} failed:\n{output[-3000:]}")
    measured: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    if not measured["package"].startswith(str(tree.resolve())):
        sys.exit(f"micro-benchmark imported {measured['package']}, not {tree}")
    return measured


# -- profile -----------------------------------------------------------------------------------


def cpu_profile_child(out: Path, cli_args: list[str], interval: float = 0.001) -> int:
    """Run the CLI in this process under a CPU-time sampler; write py-spy-style raw stacks.

    `ITIMER_PROF` ticks on the process's CPU time (user + sys) only, so waiting (an fsync, the
    event loop's select) is never sampled; a tick during a C call (a SQLite statement) is taken
    when it returns, in the Python frame that made it. The CLI runs no threads of its own off a
    terminal. (py-spy counts a thread blocked in fsync, state D, as busy: a wall-clock view.)
    """
    import collections
    import runpy
    import signal
    import types

    stacks: collections.Counter[tuple[tuple[str, str, int], ...]] = collections.Counter()

    def sample(_signum: int, frame: types.FrameType | None) -> None:
        stack = []
        while frame is not None:
            code = frame.f_code
            name = getattr(code, "co_qualname", code.co_name)
            stack.append((code.co_filename, name, frame.f_lineno))
            frame = frame.f_back
        stacks[tuple(reversed(stack))] += 1

    signal.signal(signal.SIGPROF, sample)
    signal.setitimer(signal.ITIMER_PROF, interval, interval)
    sys.argv = ["finalpos", *cli_args]
    status = 0
    try:
        runpy.run_module("finalpos_async.cli", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 0
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
    with out.open("w") as raw:
        for stack, count in stacks.items():
            frames = ";".join(f"{name} ({_short(file)}:{line})" for file, name, line in stack)
            raw.write(f"{frames} {count}\n")
    return status


def _short(file: str) -> str:
    for marker in ("site-packages/", "/finalpos_async/", "/finalpos_sync/", "lib/python3"):
        if marker in file:
            tail = file.split(marker, 1)[1]
            if marker.startswith("/finalpos"):
                return marker.strip("/") + "/" + tail
            return tail.split("/", 1)[1] if marker == "lib/python3" else tail
    return file


def profile(tree: Path, source: Path, rows: int, folder: Path, api_key: str, top: int) -> None:
    """One `--key email` import by `tree` under the CPU sampler: the top functions
    (`profile_cell`'s report) and the journal methods' inclusive share."""
    import profile_cell

    folder.mkdir()
    raw = folder / "stacks.txt"
    command = [sys.executable, str(Path(__file__).resolve()), "--cpu-profile-child", str(raw)]
    command += ["--api-key", api_key]
    with fresh_sandbox() as url:
        command += ["--base-url", url, "import", "customers", str(source), "--key", "email"]
        command += ["--journal", str(folder / "run.journal")]
        command += ["--failed-file", str(folder / "failed.jsonl")]
        result = run_child(command, tree=tree, cwd=folder, log=folder / "output.txt")
    if result["exit"] != 0 or not raw.exists():
        print(f"no profile: {(folder / 'output.txt').read_text()[-1000:]}")
        return
    cpu = result["user_s"] + result["sys_s"]
    print(
        f"CPU {cpu:.2f} s (sampled, so a little above an unsampled run); the report below is "
        "profile_cell's, its 'py-spy' line counts these CPU-time samples"
    )
    profile_cell._print_pyspy(raw, top)
    total = 0
    shares = dict.fromkeys(JOURNAL_FUNCTIONS, 0)
    journal_any = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        names = {
            f.split(" (", 1)[0].rsplit(".", 1)[-1] for f in stack.split(";") if "_journal.py" in f
        }
        if names:
            journal_any += count
        for name in shares:
            if name in names:
                shares[name] += count
    total = max(total, 1)
    print(
        f"\njournal (a frame in bulk/*_journal.py): {journal_any / total:.1%} of CPU samples "
        f"= {journal_any / total * cpu / rows * 1e6:,.0f} µs/row"
    )
    for name, count in shares.items():
        print(
            f"  Journal.{name:<15} inclusive {count / total:6.1%} "
            f"= {count / total * cpu / rows * 1e6:5.1f} µs/row"
        )


# -- report ------------------------------------------------------------------------------------


def _spread(values: list[float]) -> str:
    return f"{min(values):,.0f} / {statistics.median(values):,.0f} / {max(values):,.0f}"


def cli_table(runs: list[dict[str, Any]], reps: int) -> tuple[str, dict[str, float]]:
    lines = [
        "| variant | identity | runs | CPU µs/row min / median / max | user / sys µs/row (median) "
        "| KiB written/row (median) | rows/s (median) | new/old (medians) "
        "| paired new/old min..max |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratios: dict[str, float] = {}
    for key in KEYS:
        identity = f"--key {key}" if key else "content"
        median_of = {}
        for tree in ("old", "new"):
            cell = [r for r in runs if r["tree"] == tree and r["key"] == key]
            cpu = [r["cpu_us_per_row"] for r in cell]
            median_of[tree] = statistics.median(cpu)
            rows = cell[0]["rows"]
            user = statistics.median(r["user_s"] / rows * 1e6 for r in cell)
            sys_ = statistics.median(r["sys_s"] / rows * 1e6 for r in cell)
            kib = statistics.median(r["written_kib"] / rows for r in cell)
            rate = statistics.median(rows / r["wall_s"] for r in cell)
            ratio = paired = ""
            if tree == "new":
                ratios[identity] = median_of["new"] / median_of["old"]
                pairs = [
                    n["cpu_us_per_row"] / o["cpu_us_per_row"]
                    for rep in range(reps)
                    for o in cell_of(runs, "old", key, rep)
                    for n in cell_of(runs, "new", key, rep)
                ]
                ratio = f"**{ratios[identity]:.3f}**"
                paired = f"{min(pairs):.3f}..{max(pairs):.3f}"
            lines.append(
                f"| {tree} | {identity} | {len(cell)} | {_spread(cpu)} | {user:,.0f} / {sys_:,.0f} "
                f"| {kib:.2f} | {rate:,.0f} | {ratio} | {paired} |"
            )
    return "\n".join(lines), ratios


def cell_of(runs: list[dict[str, Any]], tree: str, key: str | None, rep: int) -> list[Any]:
    return [r for r in runs if r["tree"] == tree and r["key"] == key and r["rep"] == rep]


def micro_table(results: list[dict[str, Any]], old_cli_cpu: float) -> str:
    lines = [
        "| tree | journal calls per row | commits | CPU µs/row min / median / max "
        "| wall µs/row (median) | KiB written/row (median) | CPU vs old `record` (median) "
        "| CPU as % of old CLI CPU/row |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    base = statistics.median(
        r["cpu_us_per_row"] for r in results if (r["tree"], r["variant"]) == ("old", "record")
    )
    for tree, variant in MICRO:
        cell = [r for r in results if (r["tree"], r["variant"]) == (tree, variant)]
        cpu = [r["cpu_us_per_row"] for r in cell]
        med = statistics.median(cpu)
        commits = (f"1 FULL per {WINDOW} rows" if "intents" in variant else "1 per 500 rows") + (
            " (NORMAL)" if tree == "old" else " (FULL)" if "intents" not in variant else ""
        )
        lines.append(
            f"| {tree} | {variant.replace('+', ' + ')} | {commits} | {_spread(cpu)} "
            f"| {statistics.median(r['wall_us_per_row'] for r in cell):,.1f} "
            f"| {statistics.median(r['written_kib_per_row'] for r in cell):.2f} "
            f"| {med - base:+,.1f} | {med / old_cli_cpu:.1%} |"
        )
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"Make the old tree: git worktree add --detach /tmp/finalpos-before {BEFORE_COMMIT}",
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=Path("/tmp/finalpos-before"),
        help=f"a checkout of the code before the intents ({BEFORE_COMMIT}); "
        "default /tmp/finalpos-before",
    )
    parser.add_argument("--before-commit", default=BEFORE_COMMIT, help=argparse.SUPPRESS)
    parser.add_argument(
        "--make-before", action="store_true", help="create --before (git worktree) if missing"
    )
    parser.add_argument("--after", type=Path, default=ROOT, help="the new tree (default: this one)")
    parser.add_argument("--rows", type=int, default=20_000, help="CSV rows (default 20,000)")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions (default 5)")
    parser.add_argument(
        "--micro-rows", type=int, default=20_000, help="rows per journal micro-benchmark run"
    )
    parser.add_argument("--quick", action="store_true", help="2,000 rows, 1 rep (CI; < 60 s)")
    parser.add_argument(
        "--profile", action="store_true", help="also sample one run per tree (CPU time)"
    )
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument("--json", type=Path, help="write every raw figure to this file")
    parser.add_argument("--micro-child", help=argparse.SUPPRESS)
    parser.add_argument("--micro-dir", type=Path, help=argparse.SUPPRESS)
    if sys.argv[1:2] == ["--cpu-profile-child"]:
        return cpu_profile_child(Path(sys.argv[2]), sys.argv[3:])
    args = parser.parse_args()
    if args.micro_child:
        micro_child(args.micro_child, args.micro_rows, args.micro_dir)
        return 0
    if args.quick:
        args.rows, args.reps, args.micro_rows = 2_000, 1, 5_000
    before, after = args.before.resolve(), args.after.resolve()
    if not (before / "finalpos_async").is_dir():
        if not args.make_before:
            sys.exit(
                f"{before} holds no finalpos_async. Make it with\n"
                f"  git worktree add --detach {before} {args.before_commit}\n"
                "or pass --make-before"
            )
        make_before(before, args.before_commit)

    from finalpos_async._constants import SANDBOX_API_KEY

    trees = {"old": before, "new": after}
    started_load = uptime()
    with tempfile.TemporaryDirectory(prefix=".write-ahead-", dir=ROOT) as tmp_text:
        tmp = Path(tmp_text)
        fs = filesystem(tmp)
        print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}; {started_load}")
        for name, tree in trees.items():
            print(f"# {name}: {tree} ({_revision(tree)}) -> {check_tree(tree, tmp)}")
        print(f"# journals and CSV in {tmp} ({fs}); {args.rows:,} rows, {args.reps} reps")
        source = tmp / "customers.csv"
        make_csv(source, args.rows, seed=7)

        runs: list[dict[str, Any]] = []
        micro_results: list[dict[str, Any]] = []
        startup: dict[str, list[float]] = {"old": [], "new": []}
        n = 0
        for rep in range(args.reps):
            for key in KEYS:
                for name, tree in trees.items():  # ABAB: old, new, old, new
                    n += 1
                    result = cli_import(
                        tree, source, key, tmp / f"run{n}", SANDBOX_API_KEY, args.rows
                    )
                    result.update(tree=name, key=key, rep=rep, rows=args.rows)
                    runs.append(result)
                    print(
                        f"#   rep {rep + 1} {name} {key or 'content'}: "
                        f"{result['cpu_us_per_row']:,.0f} µs/row, {result['wall_s']:.1f} s",
                        flush=True,
                    )
            for name, tree in trees.items():
                n += 1
                (tmp / f"help{n}").mkdir()
                startup[name].append(startup_cpu(tree, tmp / f"help{n}"))
            for tree_name, variant in MICRO:
                n += 1
                measured = micro(trees[tree_name], variant, args.micro_rows, tmp / f"micro{n}")
                measured.update(tree=tree_name, rep=rep)
                micro_results.append(measured)
        ended_load = uptime()

        cli, ratios = cli_table(runs, args.reps)
        old_cpu = statistics.median(r["cpu_us_per_row"] for r in runs if r["tree"] == "old")
        print(f"\n## CLI: `finalpos import customers` of {args.rows:,} rows, CPU per row\n")
        print(cli)
        print(
            "\nstart-up (`finalpos --help`) CPU, median: "
            + ", ".join(f"{k} {statistics.median(v) * 1e3:.0f} ms" for k, v in startup.items())
            + f" (= {statistics.median(startup['new']) / args.rows * 1e6:.0f} µs/row here)"
        )
        for identity, ratio in ratios.items():
            verdict = "within" if ratio <= GOAL else "OVER"
            print(
                f"{identity}: new/old = {ratio:.3f} ({(ratio - 1) * 100:+.1f} % CPU per row): "
                f"{verdict} the +{(GOAL - 1) * 100:.0f} % goal"
            )
        print(f"\n## Journal alone: {args.micro_rows:,} rows per run, on {fs}\n")
        print(micro_table(micro_results, old_cpu))
        print(f"\n# load at the start: {started_load}\n# load at the end:   {ended_load}")
        if args.profile:
            for name, tree in trees.items():
                print(f"\n## CPU samples, {name} tree, --key email, {args.rows:,} rows\n")
                profile(tree, source, args.rows, tmp / f"profile-{name}", SANDBOX_API_KEY, args.top)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "load": [started_load, ended_load],
                    "filesystem": fs,
                    "trees": {k: [str(v), _revision(v)] for k, v in trees.items()},
                    "cli": runs,
                    "startup_cpu_s": startup,
                    "micro": micro_results,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
