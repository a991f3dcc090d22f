"""`benchmarks/shared_limit.py --quick` runs end to end and the shared Redis cap holds.

It starts its own redis-server and sandbox; like `tests/test_redis_limiter.py`, a missing
`redis-server` fails the test under `CI=true` and skips it elsewhere. Nothing about speed is
asserted beyond the cap (total grants <= rate * duration + burst over the 4 processes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis_server import redis_available

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "shared_limit.py"
DURATION = 2.0
RATE, BURST = 200, 200


def test_quick_run_reports_the_scenarios_and_the_shared_cap_holds(tmp_path: Path) -> None:
    if not redis_available():
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    figures = tmp_path / "figures.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--duration", str(DURATION)]
    done = subprocess.run(
        [*command, "--json", str(figures)],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert any(row.startswith("| shared |") for row in rows), done.stdout
    assert any(row.startswith("| per-process |") for row in rows), done.stdout
    scenarios = {row["scenario"]: row for row in json.loads(figures.read_text())["scenarios"]}
    assert set(scenarios) == {"shared", "per-process", "split"}
    shared = scenarios["shared"]
    assert shared["requests"] > 0
    assert scenarios["per-process"]["requests"] > 0
    # The cap held: four processes, one bucket, at most rate * T + burst grants in the window.
    assert shared["requests"] <= RATE * DURATION + BURST, shared
    assert shared["rate"] <= RATE * 1.05 + BURST / DURATION
    assert shared["status_429"] == 0  # the sandbox runs without faults here
