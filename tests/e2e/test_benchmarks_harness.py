"""The benchmark harness works: canned server, one measured cell, unavailable peers, the report.

These check the machinery of `benchmarks/`, never its figures (CI runs `run.py --quick` too).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

# e2e (pyproject.toml): .ci/run runs it on Python 3.11 with the newest dependencies only: it runs
# the benchmark scripts as subprocesses, and CI's benchmark step runs them on that venv alone too.
pytestmark = pytest.mark.e2e

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

import canned  # noqa: E402  (benchmarks/ is not a package)
import csv_import  # noqa: E402
import report  # noqa: E402
import server  # noqa: E402


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return json.load(resp)


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, int(port))) == 0


def test_fallback_server_answers_every_route_and_stops_with_the_harness() -> None:
    with server.run_server("aiohttp") as srv:
        assert "aiohttp.web" in srv.kind
        one = _get_json(srv.url + "/v1/api/customer/anything")
        assert one["id"] == canned.customer_record(0)["id"]
        assert one["loyaltyTier"] == "gold"  # the field the spec does not list
        first = _get_json(srv.url + "/v1/api/customers?skip=0&limit=100")
        assert len(first) == 100
        assert len({r["id"] for r in first}) == 100
        # The generated peer sends numbers as floats; the last page is short and ends a walk.
        last = _get_json(srv.url + "/v1/api/customers?skip=900.0&limit=100")
        assert len(last) == canned.LIST_TOTAL - 900
        assert last[0]["id"] != first[0]["id"]
        assert _get_json(srv.url + "/v1/api/customers?skip=1000&limit=100") == []
        request = urllib.request.Request(
            srv.url + "/v1/api/customer",
            data=canned.encode(canned.create_body(1)),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 201
            assert json.load(resp)["email"] == "customer0@example.com"
        url = srv.url
    assert not _port_open(url)


def _run_variant(*args: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(BENCH_DIR / "variants.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_a_cell_reports_cpu_per_request_for_each_operation() -> None:
    pytest.importorskip("orjson")
    with server.run_server("aiohttp") as srv:
        lines = _run_variant(
            "aiohttp-orjson", "retrieve,list", "--url", srv.url, "--n", "20,2", "--warmup", "1"
        )
    assert [line["operation"] for line in lines] == ["retrieve", "list"]
    assert all(line["status"] == "ok" for line in lines)
    assert lines[0]["requests"] == 20
    assert lines[1]["requests"] == 2 * canned.PAGES_PER_WALK
    assert all(line["cpu_s"] > 0 and line["wall_s"] > 0 for line in lines)


def test_a_missing_peer_is_reported_unavailable_with_its_reason() -> None:
    # No --peer folder: the generated client was not generated in this run.
    lines = _run_variant("generated-async", "retrieve", "--url", "http://127.0.0.1:9", "--n", "1")
    assert lines[0]["status"] == "unavailable"
    assert "openapi-python-client" in lines[0]["reason"]


def _cell(us: list[float]) -> dict[str, Any]:
    runs = [{"status": "ok", "cpu_s": u * 1e-6 * 100, "wall_s": 0.1, "requests": 100} for u in us]
    return report.cell_stats(runs)


def test_budgets_compare_medians_and_show_the_paired_range() -> None:
    cells = {
        "aiohttp-orjson": {"retrieve": _cell([100, 110, 90]), "list": _cell([1000, 1000, 1000])},
        "finalpos-async": {"retrieve": _cell([120, 150, 100]), "list": _cell([3000, 2500, 2000])},
        "finalpos-sync": {
            "retrieve": report.cell_stats([{"status": "unavailable", "reason": "x"}])
        },
    }
    imports = {
        "aiohttp": {"status": "ok", "best_ms": 100.0, "median_ms": 110.0},
        "finalpos_async": {"status": "ok", "best_ms": 120.0, "median_ms": 130.0},
    }
    rows = {row["budget"]: row for row in report.budget_rows(cells, imports)}
    retrieve = rows["finalpos retrieve / raw aiohttp + orjson"]
    assert retrieve["ratio"]["median"] == pytest.approx(1.2)
    # paired per round: 120/100, 150/110, 100/90
    assert retrieve["ratio"]["min"] == pytest.approx(100 / 90)
    assert retrieve["ratio"]["max"] == pytest.approx(150 / 110)
    assert retrieve["verdict"] == "met"
    assert rows["finalpos list page / raw aiohttp + orjson page"]["verdict"] == "met"  # 2.5 ≤ 2.5
    assert rows["finalpos_sync / requests.Session, retrieve"]["verdict"] == "not measured"
    assert rows["import finalpos_async / import aiohttp (best of N)"]["verdict"] == "met"
    cells["finalpos-async"]["retrieve"] = _cell([200, 200, 200])
    rows = {row["budget"]: row for row in report.budget_rows(cells, imports)}
    assert rows["finalpos retrieve / raw aiohttp + orjson"]["verdict"] == "MISSED"
    table = "\n".join(report.group_table(report.ASYNC_GROUP, cells))
    assert "| 200 (200..200) |" in table
    assert "unavailable: x" not in table  # finalpos-sync is not in the async table


def test_the_targets_table_gives_min_median_max_the_ratio_and_whether_each_is_met() -> None:
    cells = {
        "aiohttp-orjson": {"retrieve": _cell([100, 100, 100]), "list": _cell([600, 620, 640])},
        "finalpos-async": {"retrieve": _cell([120, 130, 110]), "list": _cell([1800, 1500, 1600])},
        "raw-import": {"import": _cell([150, 160, 140])},
        "finalpos-import": {"import": _cell([450, 480, 420])},
        "requests": {"retrieve": _cell([700, 700, 700])},
        "finalpos-sync": {"retrieve": _cell([210, 200, 220])},
    }
    rows = {row["operation"] + " " + row["variant"]: row for row in report.target_rows(cells)}
    assert rows["retrieve finalpos-async"]["ratio"]["median"] == pytest.approx(1.2)
    assert rows["retrieve finalpos-async"]["verdict"] == "met"  # 1.20 <= 1.25
    assert rows["list finalpos-async"]["ratio"]["median"] == pytest.approx(1600 / 620)
    assert rows["list finalpos-async"]["verdict"] == "not met"  # 2.58 > 2.4
    assert rows["import finalpos-import"]["verdict"] == "not met"  # 3.0 > 2.3
    assert rows["retrieve finalpos-sync"]["verdict"] == "met"  # 0.30 <= 0.4
    table = "\n".join(report.target_table(cells))
    assert "| 100-record page, async / raw aiohttp + orjson | 1,500 / 1,600 / 1,800 " in table
    # paired per round: 1800/600, 1500/620, 1600/640
    assert "| 600 / 620 / 640 | 2.58x | 2.42..3.00 | ≤ 2.4x | **not met** |" in table
    del cells["requests"]
    rows = {row["operation"] + " " + row["variant"]: row for row in report.target_rows(cells)}
    assert rows["retrieve finalpos-sync"]["verdict"] == "not measured"


def test_import_cells_create_every_row_in_the_canned_empty_collection(tmp_path: Path) -> None:
    pytest.importorskip("orjson")
    source = tmp_path / "rows.csv"
    csv_import.make_csv(source, 40)
    with server.run_server("aiohttp") as srv:
        assert _get_json(srv.url + canned.EMPTY_TARGET + canned.LIST_PATH + "?skip=0") == []
        results = {v: csv_import.run_cell(v, srv.url, source, 40) for v in csv_import.VARIANTS}
    for variant, result in results.items():
        assert result["status"] == "ok", (variant, result)
        assert result["requests"] == 40
        assert result["cpu_s"] > 0
    # A row count the child did not reach is a failed cell, never a fast one.
    with server.run_server("aiohttp") as srv:
        short = csv_import.run_cell("raw-import", srv.url, source, 41)
    assert short["status"] == "failed"
    assert "40 of 41 rows" in short["reason"]


def test_the_readme_speed_section_gives_every_target_the_harness_reports() -> None:
    readme = (BENCH_DIR.parent / "README.md").read_text()
    speed = readme.split("\n## Speed\n", 1)[1].split("\n## ", 1)[0]
    for _measure, _variant, _reference, _op, target in report.TARGETS:
        assert f"≤ {target}x |" in speed
    # Each row says met or not met, and what is not met is said in words under the table.
    assert speed.count("| met |") + speed.count("| **not met** |") == len(report.TARGETS)
    assert ("**Not met:**" in speed) == ("| **not met** |" in speed)
