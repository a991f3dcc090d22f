"""The examples in examples/ run against the sandbox, as users would run them."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from aiohttp.test_utils import TestClient, TestServer

from finalpos_async.sandbox import Sandbox

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run examples/NAME as a script; returns its stdout (fails the test on a non-zero exit)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FINALPOS_")}
    base["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), EXAMPLES / name)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox().run_in_thread() as sb:
        yield sb


def test_legacy_sync_example_runs_with_the_embedded_sandbox() -> None:
    out = run_example("legacy_sync.py")
    assert "created " in out
    assert "updated phone: +15550100" in out
    assert "deleted: retrieve now fails with 404" in out


def test_bulk_import_example_resumes_from_its_journal(sandbox: Sandbox, tmp_path: Path) -> None:
    env = {"FINALPOS_API_KEY": sandbox.api_key, "FINALPOS_BASE_URL": sandbox.url}
    journal = str(tmp_path / "example.journal")
    first = run_example("bulk_import.py", "--limit", "150", "--journal", journal, env=env)
    assert "created 150, already there 0, failed 0" in first
    second = run_example("bulk_import.py", "--limit", "200", "--journal", journal, env=env)
    assert "created 50, already there 150, failed 0" in second


def test_bulk_import_example_runs_without_a_key() -> None:
    assert "created 40, already there 0, failed 0" in run_example("bulk_import.py", "--limit", "40")


async def test_async_backend_example_serves_with_one_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Sandbox() as sandbox:
        monkeypatch.setenv("FINALPOS_API_KEY", sandbox.api_key)
        monkeypatch.setenv("FINALPOS_BASE_URL", sandbox.url)
        backend = load("async_backend.py")
        app = backend.create_app()
        async with TestClient(TestServer(app)) as http:
            client = app[backend.CLIENT]
            created = await http.post(
                "/customers",
                json={"email": "web@example.com", "firstName": "Web", "lastName": "App"},
            )
            assert created.status == 201
            customer = await created.json()
            got = await http.get(f"/customers/{customer['id']}")
            assert (await got.json())["email"] == "web@example.com"
            assert (await http.get("/customers/0123456789abcdef01234567")).status == 404
            listed = await (await http.get("/customers?limit=5")).json()
            assert [c["id"] for c in listed] == [customer["id"]]
            bad = await http.post("/customers", json={"email": "x@example.com"})
            assert bad.status == 400
            # Every handler used the same client, opened once for the app.
            assert app[backend.CLIENT] is client
        assert client.is_closed
