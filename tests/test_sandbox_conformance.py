"""Schemathesis against the sandbox: every operation, bounded examples, zero conformance failures.

The checks are the ones the sandbox promises: no server errors, and statuses, content types,
headers and bodies that the spec documents. Checks about how strict validation is
(`positive_data_acceptance`, `negative_data_rejection`, ...) are left out on purpose: the spec is
rebuilt from partial docs and the sandbox is stricter than it where the spec contradicts itself
(see the sandbox README section).

`FINALPOS_CONFORMANCE_EXAMPLES` raises the examples per operation (default 3 keeps CI fast).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from finalpos_async.sandbox import Sandbox

SPEC = Path(__file__).resolve().parent.parent / "finalpos_async" / "spec" / "finalpos-openapi.json"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


def _schemathesis_command() -> list[str]:
    st = Path(sys.executable).with_name("st")
    if st.exists():
        return [str(st)]
    found = shutil.which("st")
    if found is None:
        pytest.skip("schemathesis is not installed")
    return [found]


@pytest.mark.timeout(110)
def test_schemathesis_finds_no_conformance_failures(tmp_path: Path) -> None:
    examples = os.environ.get("FINALPOS_CONFORMANCE_EXAMPLES", "3")
    report = tmp_path / "schemathesis.json"
    with Sandbox().run_in_thread() as sandbox:
        result = subprocess.run(
            [
                *_schemathesis_command(),
                "run",
                str(SPEC),
                "--url",
                sandbox.url,
                "--header",
                f"x-api-key: {sandbox.api_key}",
                "--checks",
                ",".join(CHECKS),
                "--max-examples",
                examples,
                "--seed",
                "1",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--report",
                "json",
                "--report-json-path",
                str(report),
            ],
            capture_output=True,
            text=True,
            timeout=100,
            cwd=tmp_path,
            check=False,
        )
    output = result.stdout[-4000:] + result.stderr[-2000:]
    summary = json.loads(report.read_text())
    assert summary["operations"]["tested"] == 52, output
    assert summary["test_cases"]["generated"] > 52 * int(examples), output
    assert summary["test_cases"]["with_failures"] == 0, output
    assert summary["failures"] == [], output
    assert summary["errors"] == [], output
    assert result.returncode == 0, output
