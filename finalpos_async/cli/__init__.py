"""The `finalpos` command (installed with the `cli` extra: `pip install 'finalpos[cli]'`).

    finalpos import customers examples/customers.csv     # no key: an embedded sandbox
    finalpos export customers --format csv > customers.csv
    finalpos get customers ID / finalpos delete customers ID
    finalpos export custom_tables.list_rows --param table-id=ID   # RESOURCE.METHOD
    finalpos sandbox --port 8000

Global options `--api-key` / `FINALPOS_API_KEY` and `--base-url` / `FINALPOS_BASE_URL`.
`import_file` runs `finalpos import` as a Python call (for task runners: Celery, Airflow, ...).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._import_call import import_file

__all__ = ["import_file", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `finalpos` console script."""
    try:
        from . import _heap
        from ._app import cli
    except ImportError as exc:  # click or rich missing: say which extra brings them
        if exc.name in ("click", "rich"):
            sys.stderr.write(
                f"finalpos: the command line needs {exc.name}; install it with "
                "pip install 'finalpos[cli]'\n"
            )
            sys.exit(1)
        raise
    _heap.own_process = True  # this process is the command's own
    cli.main(args=list(argv) if argv is not None else None, prog_name="finalpos")


def __getattr__(name: str) -> object:
    # `import_file` loads the import engine: only when it is asked for.
    if name == "import_file":
        from ._import_call import import_file

        return import_file
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
