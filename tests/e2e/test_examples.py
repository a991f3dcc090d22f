"""The examples in examples/ and the README's code run against the sandbox, as users run them."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from conftest import ScriptedServer, Step, status

from finalpos_async import APIStatusError, AsyncFinalPOS
from finalpos_async.sandbox import Sandbox

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run examples/NAME as a script; returns its stdout (fails the test on a non-zero exit)."""
    return run_script(EXAMPLES / name, *args, env=env)


def run_script(path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a Python file as a script; returns its stdout (fails the test on a non-zero exit)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FINALPOS_")}
    base["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, str(path), *args],
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


API_ERROR = {"statusCode": 400, "message": "id must be a valid id", "error": "Bad Request"}


async def backend_for(url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, Any]:
    monkeypatch.setenv("FINALPOS_API_KEY", "sk_test_backend")
    monkeypatch.setenv("FINALPOS_BASE_URL", url)
    backend = load("async_backend.py")
    return backend, backend.create_app()


async def test_async_backend_answers_the_apis_400_for_a_malformed_id(
    scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted_server.play(status(400, API_ERROR))
    _, app = await backend_for(scripted_server.url, monkeypatch)
    async with TestClient(TestServer(app)) as http:
        answer = await http.get("/customers/not-an-id")
        assert answer.status == 400  # was 500, with a traceback
        assert await answer.json() == API_ERROR  # the API's own body, passed through
    assert scripted_server.seen[0].path.endswith("/not-an-id")


async def test_async_backend_summarises_an_error_page_that_is_not_json(
    scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = "<html><body><h1>409 Conflict</h1>already exists</body></html>"
    scripted_server.play(Step(409, page, content_type="text/html"))
    _, app = await backend_for(scripted_server.url, monkeypatch)
    async with TestClient(TestServer(app)) as http:
        answer = await http.post(
            "/customers", json={"email": "a@example.com", "firstName": "A", "lastName": "B"}
        )
        assert answer.status == 409
        body = await answer.json()
    assert body["statusCode"] == 409
    assert "<html>" not in body["message"]


async def test_async_backend_answers_400_for_requests_it_cannot_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Sandbox() as sandbox:
        monkeypatch.setenv("FINALPOS_API_KEY", sandbox.api_key)
        monkeypatch.setenv("FINALPOS_BASE_URL", sandbox.url)
        backend = load("async_backend.py")
        app = backend.create_app()
        async with TestClient(TestServer(app)) as http:
            for body in ("{not json", "\xff\xfe", "[1, 2]", '"text"'):
                answer = await http.post(
                    "/customers", data=body, headers={"Content-Type": "application/json"}
                )
                assert answer.status == 400, body  # a non-JSON body was a 500
                assert (await answer.json())["statusCode"] == 400
            wrong_type = await http.post(
                "/customers", json={"email": 5, "firstName": "A", "lastName": "B"}
            )
            assert wrong_type.status == 400
            assert (await http.get("/customers?limit=many")).status == 400
            assert (await http.get("/customers?limit=0")).status == 400
            # An id the SDK refuses to put in a URL (a line break) is the caller's mistake.
            refused = await http.get("/customers/a%0Ab")
            assert refused.status == 400
            assert "control characters" in (await refused.json())["message"]
            # Whatever the API answers for an id it cannot use, the backend answers the same.
            async with AsyncFinalPOS(api_key=sandbox.api_key, base_url=sandbox.url) as direct:
                with pytest.raises(APIStatusError) as expected:
                    await direct.customers.retrieve("c_123")
            answer = await http.get("/customers/c_123")
            assert answer.status == expected.value.status_code
            assert await answer.json() == expected.value.body


README = ROOT / "README.md"
# The README sections whose code must run as written (programs) or say it is a fragment.
README_SECTIONS = (
    "Async quick start",
    "Sync quick start",
    "Pagination",
    "Errors",
    "Raw responses",
    "Testing code that uses the SDK",
)
FRAGMENT = "# A fragment:"


def readme_blocks(heading: str) -> list[str]:
    """The ```python blocks of the README section whose `## ` heading starts with `heading`."""
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}.*?(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"README has no section {heading!r}"
    return re.findall(r"^```python\n(.*?)^```$", match.group(0), re.M | re.S)


@pytest.mark.parametrize("heading", README_SECTIONS)
def test_readme_code_is_a_program_or_says_it_is_a_fragment(heading: str) -> None:
    blocks = readme_blocks(heading)
    assert blocks
    for block in blocks:
        if not block.startswith(FRAGMENT):
            compile(block, f"README: {heading}", "exec")  # no top-level await


def run_readme_program(heading: str, tmp_path: Path) -> str:
    """Run the section's first block, its program (later blocks show one point each)."""
    program = readme_blocks(heading)[0]
    script = tmp_path / "quickstart.py"
    script.write_text(program, encoding="utf-8")
    # What the README says to run without a key: FINALPOS_SANDBOX=1 python quickstart.py
    return run_script(script, env={"FINALPOS_SANDBOX": "1"})


def test_readme_async_quick_start_runs_on_a_fresh_sandbox(tmp_path: Path) -> None:
    (line,) = run_readme_program("Async quick start", tmp_path).splitlines()
    customer_id, _total_spent = line.split()
    assert customer_id


def test_readme_sync_quick_start_runs_on_a_fresh_sandbox(tmp_path: Path) -> None:
    out = run_readme_program("Sync quick start", tmp_path)
    assert "grace@example.com" in out
    assert "200 1 grace@example.com" in out
    assert out.endswith("deleted: 404\n")


def test_readme_mock_transport_program_runs_with_finalpos_sandbox_set(tmp_path: Path) -> None:
    # Its client passes transport=, which wins over FINALPOS_SANDBOX=1 (set by the helper).
    assert run_readme_program("Testing code that uses the SDK", tmp_path) == ""


async def test_readme_fragments_run_against_the_sandbox(capsys: pytest.CaptureFixture[str]) -> None:
    fragments = [
        block
        for heading in ("Pagination", "Errors", "Raw responses")
        for block in readme_blocks(heading)
        if block.startswith(FRAGMENT)
    ]
    assert len(fragments) == 3
    async with (
        Sandbox() as sandbox,
        AsyncFinalPOS(api_key=sandbox.api_key, base_url=sandbox.url) as client,
    ):
        customer = await client.customers.create(
            email="ada@example.com", first_name="Ada", last_name="Lovelace"
        )
        category = await client.categories.create(name="Tea", description="Leaves")
        for fragment, customer_id in zip(
            fragments, [None, "0123456789abcdef01234567", customer.id], strict=True
        ):
            # Each fragment's own first line names what it needs from its surroundings.
            source = "async def fragment(client, customer_id, category_id):\n"
            source += textwrap.indent(fragment, "    ")
            namespace: dict[str, Any] = {}
            exec(compile(source, "README fragment", "exec"), namespace)
            await namespace["fragment"](client, customer_id, category.id)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "1 0 50"  # Pagination: the first page of one customer
    assert out[1].startswith("404 ")  # Errors: the NotFoundError branch
    assert out[2].startswith("200 ")  # Raw responses
