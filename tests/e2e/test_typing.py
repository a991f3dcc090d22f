"""The README's code type-checks as a user writes it, and typical mistakes do not.

Both `mypy --strict` and `pyright` in strict mode, each with its defaults (not this repository's
settings), in a subprocess:

- every ```python block of README.md, taken from the README at test time (so the two cannot
  drift): a program as it is, one module per block; a block whose first line starts with
  `# A fragment:` inside an `async def` whose parameters are the names its opening comment
  puts in backticks (`client`, `customer_id`, ...; their types are in `FRAGMENT_CONTEXT`).
  Nothing may be reported.
- `tests/e2e/typing/mistakes.py`: each tool must report exactly the lines tagged `# expect-error`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# e2e (pyproject.toml): .ci/run runs it on Python 3.11 with the newest dependencies only; mypy and
# pyright in subprocesses (slow) type-check the README's code and the deliberate mistakes.
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MISTAKES = ROOT / "tests" / "e2e" / "typing" / "mistakes.py"
FRAGMENT = "# A fragment:"
EXPECT_ERROR = "# expect-error"
BIN = Path(sys.executable).parent

# Names a fragment's opening comment may give it, as (annotation, the import that annotation
# needs). Imported under private names, so a snippet that forgets an import still fails.
FRAGMENT_CONTEXT: dict[str, tuple[str, str]] = {
    "client": ("_finalpos_async.AsyncFinalPOS", "import finalpos_async as _finalpos_async"),
    "customer_id": ("str", ""),
    "category_id": ("str", ""),
    "rows": (
        "_abc.Iterable[_abc.Mapping[str, _typing.Any]]",
        "import collections.abc as _abc\nimport typing as _typing",
    ),
}
# `client` described as a sync client ("`client` an open FinalPOS").
SYNC_CLIENT = ("_finalpos_sync.FinalPOS", "import finalpos_sync as _finalpos_sync")
FRAGMENT_HEAD = (
    "# {origin}: a fragment, checked inside an async function (tests/e2e/test_typing.py).\n"
    # A fragment is the start of a longer function, whose later lines use what it assigns.
    "# pyright: reportUnusedVariable=false\n"
)


@dataclass(frozen=True)
class Snippet:
    """One README block: where it starts, its code, and the module the checkers see."""

    line: int  # README line of the block's first code line
    code: str
    module: str  # the module's text
    offset: int  # module line = README line - line + 1 + offset

    @property
    def name(self) -> str:
        return f"readme_line_{self.line}"


def readme_snippets(text: str) -> list[Snippet]:
    """Every ```python block of `text` (a README), as a module to type-check."""
    snippets: list[Snippet] = []
    for match in re.finditer(r"^```python\n(.*?)^```$", text, re.M | re.S):
        code = match.group(1)
        line = text.count("\n", 0, match.start(1)) + 1
        if not code.startswith(FRAGMENT):
            snippets.append(Snippet(line, code, code, 0))
            continue
        comment = "".join(re.findall(r"^#.*\n", code.split("\n\n")[0], re.M))
        params: list[str] = []
        imports: set[str] = set()
        for name, phrase in re.findall(r"`(\w+)`([^`]*)", comment):
            if name not in FRAGMENT_CONTEXT:
                continue  # not a name the fragment uses undefined (or the checkers say so)
            annotation, needs = FRAGMENT_CONTEXT[name]
            if name == "client" and re.search(r"(?<!Async)FinalPOS\b", phrase):
                annotation, needs = SYNC_CLIENT
            params.append(f"{name}: {annotation}")
            imports.update(filter(None, needs.split("\n")))
        head = FRAGMENT_HEAD.format(origin=f"README.md line {line}")
        head += "".join(f"{i}\n" for i in sorted(imports))
        head += f"\n\nasync def readme_fragment({', '.join(params)}) -> None:\n"
        snippets.append(Snippet(line, code, head + textwrap.indent(code, "    "), head.count("\n")))
    return snippets


@dataclass(frozen=True)
class Report:
    """One message of a checker: the file it is about, its line (1-based) and its text."""

    path: Path
    line: int
    text: str


def run_mypy(paths: list[Path], cache: Path) -> list[Report]:
    done = subprocess.run(
        [
            str(BIN / "mypy"),
            "--strict",
            "--python-version=3.10",
            f"--cache-dir={cache}",
            "--no-error-summary",
            "--show-error-codes",
            "--hide-error-context",
            *map(str, paths),
        ],
        cwd=cache.parent,  # not the repository: its [tool.mypy] settings are not a user's
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    reports: list[Report] = []
    for row in done.stdout.splitlines():
        found = re.match(r"(.+?):(\d+): (error|warning): (.*)", row)
        if found:
            path, line, _, message = found.groups()
            reports.append(Report((cache.parent / path).resolve(), int(line), message))
    return reports


def run_pyright(paths: list[Path], work: Path) -> list[Report]:
    # A config of its own (strict, as a user would set it), not the repository's.
    (work / "pyrightconfig.json").write_text(
        json.dumps({"typeCheckingMode": "strict", "pythonVersion": "3.10"})
    )
    done = subprocess.run(
        [
            str(BIN / "pyright"),
            "--outputjson",
            f"--pythonpath={sys.executable}",
            "--project",
            str(work),
            *map(str, paths),
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    reports: list[Report] = []
    diagnostics: list[dict[str, Any]] = json.loads(done.stdout)["generalDiagnostics"]
    for diagnostic in diagnostics:
        if diagnostic["severity"] in ("error", "warning"):
            reports.append(
                Report(
                    Path(diagnostic["file"]).resolve(),
                    diagnostic["range"]["start"]["line"] + 1,
                    f"{diagnostic['message']} ({diagnostic.get('rule', 'error')})",
                )
            )
    return reports


@dataclass(repr=False)  # a failing test shows its own summary, not all of this
class Checked:
    """What both checkers said about the README's snippets and the mistakes file."""

    snippets: list[Snippet]
    files: dict[Path, Snippet]
    reports: dict[str, list[Report]]
    seconds: dict[str, float]


def _available(tool: str) -> None:
    if not (BIN / tool).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed in {BIN} (pip install -e '.[test]')")
        pytest.skip(f"{tool} is not installed (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Checked:
    _available("mypy")
    _available("pyright")
    work = tmp_path_factory.mktemp("typing")
    snippets = readme_snippets(README.read_text(encoding="utf-8"))
    files: dict[Path, Snippet] = {}
    for snippet in snippets:
        path = (work / f"{snippet.name}.py").resolve()
        path.write_text(snippet.module, encoding="utf-8")
        files[path] = snippet
    paths = [*files, MISTAKES]
    start = time.monotonic()
    mypy = run_mypy(paths, work / ".mypy_cache")
    middle = time.monotonic()
    pyright = run_pyright(paths, work)
    end = time.monotonic()
    reports = {"mypy --strict": mypy, "pyright (strict)": pyright}
    seconds = {"mypy --strict": middle - start, "pyright (strict)": end - middle}
    return Checked(snippets, files, reports, seconds)


def _show(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """The test's figures on the terminal, even under `-q`."""
    with capsys.disabled():
        print(f"\n{text}")


def test_the_readme_has_python_snippets() -> None:
    snippets = readme_snippets(README.read_text(encoding="utf-8"))
    assert len(snippets) >= 6
    assert any(s.code.startswith(FRAGMENT) for s in snippets)


def _readme_line(snippet: Snippet, report: Report) -> int:
    return snippet.line + report.line - 1 - snippet.offset


@pytest.mark.parametrize("tool", ["mypy --strict", "pyright (strict)"])
def test_readme_code_type_checks_as_written(
    checked: Checked, tool: str, capsys: pytest.CaptureFixture[str]
) -> None:
    problems = [
        f"README.md:{_readme_line(checked.files[r.path], r)}: {r.text}"
        for r in checked.reports[tool]
        if r.path in checked.files
    ]
    others = [
        f"{r.path}:{r.line}: {r.text}"
        for r in checked.reports[tool]
        if r.path not in checked.files and r.path != MISTAKES
    ]
    _show(
        capsys,
        f"{tool}: {len(checked.snippets)} README snippets "
        f"({sum(s.offset > 0 for s in checked.snippets)} fragments), {len(problems)} reports, "
        f"{len(others)} elsewhere; one run with mistakes.py: {checked.seconds[tool]:.1f} s",
    )
    assert not problems + others, (
        f"{tool} rejects README code as written (a fragment must start with {FRAGMENT!r} and "
        "name what it needs in backticks; see FRAGMENT_CONTEXT in tests/e2e/test_typing.py):\n"
        + "\n".join(problems + others)
    )


@pytest.mark.parametrize("tool", ["mypy --strict", "pyright (strict)"])
def test_each_deliberate_mistake_is_reported_and_nothing_else(
    checked: Checked, tool: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = MISTAKES.read_text(encoding="utf-8").splitlines()
    expected = {n for n, text in enumerate(lines, start=1) if text.endswith(EXPECT_ERROR)}
    assert len(expected) >= 8
    reported: dict[int, list[str]] = {}
    for r in checked.reports[tool]:
        if r.path == MISTAKES:
            reported.setdefault(r.line, []).append(r.text)
    missed = sorted(expected - set(reported))
    _show(
        capsys,
        f"{tool}: {MISTAKES.name}: {len(expected)} tagged lines, {len(set(reported))} reported "
        f"({sum(map(len, reported.values()))} messages)",
    )
    extra = {n: texts for n, texts in sorted(reported.items()) if n not in expected}
    assert not missed, f"{tool} does not catch the mistakes on lines {missed} of {MISTAKES.name}"
    assert not extra, f"{tool} reports untagged lines of {MISTAKES.name}: {extra}"
