"""The pytest plugin: its fixtures, its import cost, the README example, and scripted faults."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from finalpos_async.sandbox import Sandbox

pytest_plugins = ["pytester"]

FAULT = "x-sandbox-fault"


async def test_the_client_fixture_is_bound_to_the_sandbox_fixture(
    finalpos_client: Any, finalpos_sandbox: Sandbox
) -> None:
    customer = await finalpos_client.customers.create(
        email="ada@example.com", first_name="Ada", last_name="Lovelace"
    )
    fetched = await finalpos_client.customers.retrieve(customer.id)
    assert fetched == customer
    assert finalpos_sandbox.storage.get("CustomerDto", customer.id) is not None


@pytest.mark.finalpos_client(max_retries=2, backoff_base=0.001, backoff_cap=0.01)
async def test_client_retries_see_the_scripted_503_503_then_success(finalpos_client: Any) -> None:
    customer = await finalpos_client.customers.create(
        email="ada@example.com", first_name="Ada", last_name="Lovelace"
    )
    raw = await finalpos_client.customers.with_raw_response.retrieve(
        customer.id, extra_headers={FAULT: "503,503,ok"}
    )
    assert raw.status_code == 200
    assert raw.attempts == 3
    assert raw.parse().id == customer.id


@pytest.mark.finalpos_sandbox(faults="retry-after=0")
@pytest.mark.finalpos_client(max_retries=1, backoff_base=0.001, backoff_cap=0.01)
async def test_client_gives_up_when_the_script_outlasts_its_retries(finalpos_client: Any) -> None:
    from finalpos_async._exceptions import InternalServerError, RateLimitError

    with pytest.raises(RateLimitError):
        await finalpos_client.customers.retrieve("a" * 24, extra_headers={FAULT: "429,429,ok"})
    with pytest.raises(InternalServerError):
        await finalpos_client.customers.retrieve("b" * 24, extra_headers={FAULT: "500,500,ok"})


def test_the_sync_client_fixture_is_bound_to_a_threaded_sandbox(finalpos_sync_client: Any) -> None:
    outlet = finalpos_sync_client.outlets.create(
        name="Main Store",
        address="26 Federal Plaza",
        city="New York",
        state="NY",
        country="US",
        post_code="10278",
        phone="+12323232323",
    )
    assert outlet.sequence_number == 1
    assert finalpos_sync_client.outlets.retrieve(outlet.id) == outlet


README = Path(__file__).parents[2] / "README.md"


def readme_pytest_example() -> str:
    """The README's pytest snippet, read from the README itself so the test runs what it says."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("**pytest fixtures**") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("```\n", start)]


# e2e (pyproject.toml): a fresh pytest process in a new project; .ci/run runs it on Python 3.11
# with the newest dependencies only. The fixtures themselves are tested in-process above.
# With FINALPOS_SANDBOX=1 too: the fixtures pass base_url=, which wins over the variable.
@pytest.mark.e2e
@pytest.mark.parametrize("finalpos_sandbox_env", [None, "1"])
def test_the_documented_example_passes_in_a_project_with_no_pytest_config(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, finalpos_sandbox_env: str | None
) -> None:
    if finalpos_sandbox_env is None:
        monkeypatch.delenv("FINALPOS_SANDBOX", raising=False)
    else:
        monkeypatch.setenv("FINALPOS_SANDBOX", finalpos_sandbox_env)
    pytester.makepyfile(test_users_code=readme_pytest_example())
    # A new process, no ini file, no -o: what a user who copies the snippet runs.
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=3)
    # pytest-asyncio's default mode ("strict", or "Mode.STRICT" in its header since 1.0)
    result.stdout.re_match_lines([r"(?i)asyncio: mode=(mode\.)?strict\b"])
    result.stdout.no_fnmatch_line("*not natively supported*")


PLUGIN_MODULE = "finalpos_async.sandbox.pytest_plugin"
# What the plugin must not pull in on import: every pytest run of every project where the
# package is installed loads it, and these cost 300 ms or more together.
HEAVY = ("aiohttp", "attrs", "cattrs", "multidict", "yarl", "finalpos_async._client")

_MEASURE_IMPORT = f"""
import json, sys, time
import pytest
try:  # pytest loads pytest-asyncio in the same run anyway: not the plugin's cost
    import pytest_asyncio
except ImportError:
    pass
before = set(sys.modules)
start = time.perf_counter()
import {PLUGIN_MODULE}
elapsed = time.perf_counter() - start
print(json.dumps({{"ms": elapsed * 1000, "modules": sorted(set(sys.modules) - before)}}))
"""


def test_the_entry_point_names_the_plugin_module() -> None:
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("finalpos") == PLUGIN_MODULE


def test_loading_the_plugin_imports_neither_aiohttp_nor_the_sandbox(
    record_property: Callable[[str, object], None],
) -> None:
    runs = []
    for _ in range(5):
        done = subprocess.run(
            [sys.executable, "-c", _MEASURE_IMPORT],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        runs.append(json.loads(done.stdout))
    modules = runs[0]["modules"]
    median_ms = statistics.median(run["ms"] for run in runs)
    print(
        f"importing {PLUGIN_MODULE}: median {median_ms:.1f} ms over {len(runs)} runs, "
        f"{len(modules)} new modules: {modules}"
    )
    record_property("plugin_import_ms", round(median_ms, 1))  # in --junit-xml reports
    heavy = [
        m
        for m in modules
        if m.split(".")[0] in HEAVY
        or m in HEAVY
        or (m.startswith("finalpos_async.sandbox.") and m != PLUGIN_MODULE)
    ]
    assert heavy == [], f"the plugin's import pulled in {heavy} ({median_ms:.1f} ms)"


@pytest.mark.e2e  # a fresh pytest process in a new project, like the README example's test
def test_a_fixture_imports_the_sandbox_when_first_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_lazy="""
import sys

def test_before_any_fixture():
    assert "finalpos_async.sandbox._sandbox" not in sys.modules

def test_with_the_fixture(finalpos_sandbox_thread):
    assert "finalpos_async.sandbox._sandbox" in sys.modules
    assert finalpos_sandbox_thread.url.startswith("http://127.0.0.1:")
"""
    )
    pytester.runpytest_subprocess().assert_outcomes(passed=2)
