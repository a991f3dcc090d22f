"""Schemathesis against the sandbox: every operation, every check but one, zero failures.

The run uses every check schemathesis has except `unsupported_method`: an undeclared method
(TRACE) answers 404 "Cannot TRACE /path", as the API's NestJS/Express router does, not 405. So
besides the response checks (status codes, content types, headers, bodies the spec documents, no
5xx) it holds the sandbox to accepting every request the spec calls valid
(`positive_data_acceptance`: an id of any shape is a 404 when unknown, never a 400), refusing every
request the spec calls invalid (`negative_data_rejection`, `missing_required_header`), and the
stateful checks (a created record can be read back, a deleted one is gone, a key is required).

One thing is added to the spec for the run, none taken away: OpenAPI links for the records whose
id is a MongoDB wrapper (a custom-table row's `_id` is `{"$oid": "..."}` while
`GET /custom-table-row/{id}` takes the bare string). The spec declares no links, so schemathesis
infers them, and its inferred link would put the whole object into the path and report the row as
"created resource not found"; the declared link says which string is the id
(`$response.body#/_id/$oid`), and schemathesis drops its own guess for the same parameter.

Phases, all with a fixed seed so a run is reproducible (about 20-30 s on a busy 2-core machine,
some 4,300 cases): `examples` (the spec's own examples), `coverage` (boundary and negative values
of every field, deterministic), `fuzzing` (`FINALPOS_CONFORMANCE_EXAMPLES` random cases per
operation, default 5) and `stateful` (create → read → update → delete chains over the links,
`FINALPOS_CONFORMANCE_SCENARIOS` cases, default 40).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from finalpos_async.sandbox import Sandbox
from finalpos_async.sandbox._routes import build_route_table
from finalpos_async.spec import load_spec

# e2e (pyproject.toml): .ci/run runs it on Python 3.11 with the newest dependencies only;
# schemathesis, in a subprocess, holds the sandbox's answers to the spec.
pytestmark = pytest.mark.e2e

SPEC = Path(__file__).resolve().parents[2] / "finalpos_async" / "spec" / "finalpos-openapi.json"
OPERATIONS = 52
# The sandbox answers an undeclared method as the API's router does (404), not 405.
EXCLUDED_CHECKS = ("unsupported_method",)


def _schemathesis_command() -> list[str]:
    st = Path(sys.executable).with_name("st")
    if st.exists():
        return [str(st)]
    found = shutil.which("st")
    if found is None:
        pytest.skip("schemathesis is not installed")
    return [found]


def spec_with_links(path: Path = SPEC) -> dict[str, Any]:
    """The spec, plus a link from each create to each item operation of a wrapped-id collection."""
    spec = load_spec(str(path))
    table = build_route_table(spec)
    for create in table.routes:
        if create.kind != "create" or not create.entity_schema:
            continue
        id_schema = (create.entity_schema.get("properties") or {}).get("_id") or {}
        if "$oid" not in (id_schema.get("properties") or {}):
            continue
        targets = [
            op
            for op in table.routes
            if op.collection == create.collection and op.id_param and op.base_path == create.path
        ]
        response = spec["paths"][create.path][create.method.lower()]["responses"]
        links = response[str(create.success_status)].setdefault("links", {})
        for target in targets:
            links[f"{target.operation_id}ByOid"] = {
                "operationId": target.operation_id,
                "parameters": {target.id_param: "$response.body#/_id/$oid"},
            }
    return spec


def test_the_run_adds_links_for_wrapped_ids_and_nothing_else() -> None:
    spec = spec_with_links()
    row = spec["paths"]["/v1/api/custom-table-row"]["post"]["responses"]
    links = [link for answer in row.values() for link in (answer.get("links") or {}).values()]
    assert [link["parameters"] for link in links] == [{"id": "$response.body#/_id/$oid"}]
    for item in spec["paths"].values():
        for op in item.values():
            for answer in (op.get("responses") or {}).values() if isinstance(op, dict) else ():
                answer.pop("links", None)
    assert spec == load_spec(str(SPEC))


@pytest.mark.timeout(240)  # the subprocess has its own, tighter timeout
def test_schemathesis_finds_no_failures_with_every_check(tmp_path: Path) -> None:
    examples = int(os.environ.get("FINALPOS_CONFORMANCE_EXAMPLES", "5"))
    scenarios = int(os.environ.get("FINALPOS_CONFORMANCE_SCENARIOS", "40"))
    spec = tmp_path / "finalpos-openapi.json"
    spec.write_text(json.dumps(spec_with_links()), encoding="utf-8")
    # per-phase example counts are settings of the config file only
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        f"[phases.fuzzing.generation]\nmax-examples = {examples}\n"
        f"[phases.stateful.generation]\nmax-examples = {scenarios}\n",
        encoding="utf-8",
    )
    report = tmp_path / "schemathesis.json"
    with Sandbox().run_in_thread() as sandbox:
        result = subprocess.run(
            [
                *_schemathesis_command(),
                "--config-file",
                str(config),
                "run",
                str(spec),
                "--url",
                sandbox.url,
                "--header",
                f"x-api-key: {sandbox.api_key}",
                "--checks",
                "all",
                "--exclude-checks",
                ",".join(EXCLUDED_CHECKS),
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--seed",
                "1",
                "--report",
                "json",
                "--report-json-path",
                str(report),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=tmp_path,
            check=False,
        )
    output = result.stdout[-6000:] + result.stderr[-2000:]
    summary = json.loads(report.read_text())
    assert summary["operations"]["tested"] == OPERATIONS, output
    assert summary["test_cases"]["generated"] > OPERATIONS * examples, output
    assert summary["test_cases"]["with_failures"] == 0, output
    assert summary["failures"] == [], output
    assert summary["errors"] == [], output
    assert result.returncode == 0, output
