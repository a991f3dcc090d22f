"""The SDK's 52 operations against Prism's mock of the package's spec: every request conforms.

Prism (`@stoplight/prism-cli`, a tool nobody here wrote) serves the spec copy with `--errors`:
a request that does not match the spec gets an error status, and every response carries an
`sl-violations` header when the request or Prism's own answer breaks the spec. Each operation is
called through the typed async resources with valid arguments (Python values: `Decimal`,
`datetime`, nested models) and must come back 2xx, without violations, and parse into its model.

Prism is found on PATH or under the checkout (`.ci/prism`, where `.ci/run` installs it). Without
it the test skips, except under `CI=true`, where it fails: CI must not pass by skipping.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import types as pytypes
import typing
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs
import pytest
from spec_examples import ROOT, SPEC, SPEC_PATH, example_of, model_name, resolve

from finalpos_async import APIStatusError, AsyncFinalPOS, RawResponse, types
from finalpos_async._converter import is_model, structure
from finalpos_async._pagination import Page

_spec = importlib.util.spec_from_file_location("sdk_methods", ROOT / "scripts" / "sdk_methods.py")
assert _spec is not None
assert _spec.loader is not None
_sdk_methods = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_sdk_methods)
OPERATIONS: list[tuple[str, str, str]] = _sdk_methods.SDK_METHODS

# e2e (pyproject.toml): .ci/run runs it on Python 3.11 with the newest dependencies only: a Node
# process checks the requests (tests/client/test_resources_wire.py checks each one on every Python).
pytestmark = pytest.mark.e2e

BY_ID = {
    op["operationId"]: (verb.upper(), path, op)
    for path, item in SPEC["paths"].items()
    for verb, op in item.items()
}

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# The docs' own example id: Prism's static answers carry it too.
EXAMPLE_ID = "o1p2q3r4s5t6u7v8w9x0y1z2"
# Query parameters are plain strings in the spec (the custom-table ids).
EXAMPLE_QUERY = "507f1f77bcf86cd799439011"


def prism_binary() -> str | None:
    """`prism` on PATH, else one installed under the checkout by npm."""
    found = shutil.which("prism")
    if found:
        return found
    for candidate in (ROOT / ".ci" / "prism", ROOT / ".ci", ROOT):
        binary = candidate / "node_modules" / ".bin" / "prism"
        if binary.exists():
            return str(binary)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_text(log: Any) -> str:
    log.flush()
    log.seek(0)
    # Prism colours its log lines; the escapes only get in the way of reading a failure.
    return re.sub(r"\x1b\[[0-9;]*m", "", log.read().decode(errors="replace"))[-4000:]


@pytest.fixture(scope="module")
def prism_url() -> Iterator[str]:
    binary = prism_binary()
    if binary is None:
        message = (
            "Prism not found: `npm install --prefix .ci/prism @stoplight/prism-cli` "
            "(or put `prism` on PATH)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    command = [binary, "mock", str(SPEC_PATH), "--host", "127.0.0.1", "--port", str(port)]
    command.append("--errors")
    # The log goes to a file, not a pipe nobody reads while the tests run (a full pipe would
    # block Prism); it is shown when Prism fails to start.
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            _wait_until_listening(proc, port, log)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_listening(proc: subprocess.Popen[bytes], port: int, log: Any) -> None:
    """Poll the port until Prism accepts connections; fail if it exits or the deadline passes."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"Prism exited with status {proc.returncode}:\n{_log_text(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"Prism did not listen within {START_TIMEOUT:g} s:\n{_log_text(log)}")
        time.sleep(0.05)  # the poll interval; the deadline above bounds the wait


@pytest.fixture
async def client(prism_url: str) -> AsyncIterator[AsyncFinalPOS]:
    async with AsyncFinalPOS(api_key="sk_test_prism", base_url=prism_url, max_retries=0) as c:
        yield c


# ---------------------------------------------------------------------------------------------
# Valid arguments, from the spec's examples, as a user would pass them


def _python_value(annotation: Any, example: Any) -> Any:
    """The example as the Python value the typed argument takes (Decimal, datetime, a model)."""
    if typing.get_origin(annotation) in (typing.Union, pytypes.UnionType):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    if annotation is Decimal:
        return Decimal(example)
    if annotation is datetime:
        return datetime.fromisoformat(example.replace("Z", "+00:00"))
    if is_model(annotation):
        return structure(example, annotation)
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return [_python_value(item, value) for value in example]
    return example


def arguments(op_id: str) -> tuple[list[Any], dict[str, Any]]:
    """Positional path arguments and keyword arguments: every body field the spec exemplifies."""
    _verb, _path, op = BY_ID[op_id]
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for param in op.get("parameters", []):
        if param["in"] == "path":
            args.append(EXAMPLE_ID)
        elif param["name"] not in ("skip", "limit"):
            kwargs[re.sub(r"(?<=[a-z])([A-Z])", r"_\1", param["name"]).lower()] = EXAMPLE_QUERY
    media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    if media:
        schema_ref = media["schema"]["$ref"]
        model = getattr(types, model_name(schema_ref.rsplit("/", 1)[1]))
        hints = typing.get_type_hints(model)
        wire_to_field = {
            f.metadata.get("wire", re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), f.name)): f
            for f in attrs.fields(model)
            if f.name != "extra"
        }
        schema = resolve(media["schema"])
        for wire, prop in schema["properties"].items():
            example = example_of(prop)
            if example is None:
                assert wire not in schema.get("required", []), f"{op_id}: no example for {wire}"
                continue
            field = wire_to_field[wire]
            kwargs[field.name] = _python_value(hints[field.name], example)
    return args, kwargs


def ok_schema(op: dict[str, Any]) -> dict[str, Any]:
    status = min(s for s in op["responses"] if s.startswith("2"))
    content = op["responses"][status].get("content", {})
    return content.get("application/json", {}).get("schema", {})  # type: ignore[no-any-return]


def expected_type(op_id: str, paginated: bool) -> type:
    schema = ok_schema(BY_ID[op_id][2])
    ref = (schema.get("items", {}) if paginated else schema).get("$ref")
    return getattr(types, model_name(ref.rsplit("/", 1)[1])) if ref else dict  # type: ignore[no-any-return]


def violations(raw: RawResponse[Any]) -> list[Any]:
    header = raw.headers.get("sl-violations")
    return json.loads(header) if header else []


# ---------------------------------------------------------------------------------------------
# Tests


def test_every_operation_of_the_spec_is_called() -> None:
    operations = {op["operationId"] for item in SPEC["paths"].values() for op in item.values()}
    assert len(OPERATIONS) == 52
    assert {row[2] for row in OPERATIONS} == operations


@pytest.mark.parametrize(
    ("attribute", "method", "op_id"), OPERATIONS, ids=[row[2] for row in OPERATIONS]
)
async def test_operation_conforms_to_prisms_mock(
    client: AsyncFinalPOS, attribute: str, method: str, op_id: str
) -> None:
    paginated = method.startswith("list")
    args, kwargs = arguments(op_id)
    resource = getattr(client, attribute)
    raw = await getattr(resource.with_raw_response, method)(*args, **kwargs)
    assert 200 <= raw.status_code < 300, (raw.status_code, raw.text)
    assert violations(raw) == [], f"{raw.method} {raw.url}"
    parsed = raw.parse()
    item_type = expected_type(op_id, paginated)
    if paginated:
        assert isinstance(parsed, Page)
        assert len(parsed) > 0  # Prism answers the schema's example item
        assert all(isinstance(item, item_type) for item in parsed)
    else:
        assert isinstance(parsed, item_type)
    # The plain typed method (what users call) gives the same model.
    result = getattr(resource, method)(*args, **kwargs)
    result = await result  # a paginator's first page, or the model
    if paginated:
        assert list(result) == list(parsed)
    else:
        assert result == parsed


async def test_prism_does_report_a_request_that_breaks_the_spec(client: AsyncFinalPOS) -> None:
    # The control: without it, "no violations" could mean Prism checks nothing.
    with pytest.raises(APIStatusError) as caught:
        await client.request("POST", "/v1/api/customer", json={"email": "a@b.c"})
    assert caught.value.status_code in (400, 422)
    found = violations(caught.value.response)
    assert any("firstName" in v["message"] for v in found), found
