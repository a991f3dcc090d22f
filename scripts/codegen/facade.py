"""The sync package's re-exports: `finalpos_sync/__init__.py`.

Both re-export the async package's objects (errors, models, options are shared, so
`except finalpos_sync.NotFoundError` catches what `finalpos_async` raises), with the async
classes that have a sync twin swapped for it. What `finalpos_async` exports is read from the
imported package (`__all__` and each object's module), never from its source text.
"""

from __future__ import annotations

import importlib
from collections import defaultdict

from .spec import Model
from .text import HEADER

# Async names whose sync package exports a twin instead: name -> (sync module, sync name).
TWINS = {
    "AsyncFinalPOS": ("finalpos_sync._client", "FinalPOS"),
    "AsyncPaginator": ("finalpos_sync._pagination", "SyncPaginator"),
    "raw_twin": ("finalpos_sync._resource", "raw_twin"),
}
# Imported when the package is; everything else on first access (see `LAZY_NOTE`).
EAGER = frozenset({"FinalPOS", "__version__"})
LAZY_NOTE = [
    "# Imported on first access, because of import cost: building the models",
    "# and the cattrs converter is most of the package's import time, and a script that",
    "# only catches an error or makes a client must not pay for it. Name -> module.",
]
PACKAGE_DOC = """finalpos_sync: the synchronous facade of the Final POS SDK.

`FinalPOS` is the sync twin of `AsyncFinalPOS`; errors, models, options and
`RawResponse` are the async package's own objects, re-exported (so
`except finalpos_sync.NotFoundError` and `except finalpos_async.NotFoundError` catch
the same thing).
"""


def async_exports(models: dict[str, Model]) -> dict[str, str]:
    """The names `finalpos_async` exports besides the models -> the module each comes from."""
    package = importlib.import_module("finalpos_async")
    out: dict[str, str] = {}
    for name in package.__all__:
        if name in TWINS:
            module, twin = TWINS[name]
            out[twin] = module
        elif name == "__version__":
            out[name] = "finalpos_async._version"
        elif name not in models:
            value = getattr(package, name)
            out[name] = _public_home(getattr(value, "__module__", None) or type(value).__module__)
    return out


def _public_home(module: str) -> str:
    """The module to import a name from: a private package's own `__init__` re-exports what its
    private modules define (`finalpos_async._transport._mock` -> `finalpos_async._transport`)."""
    parts = module.split(".")
    for index, part in enumerate(parts[1:], 1):
        if part.startswith("_"):
            return ".".join(parts[: index + 1])
    return module


def import_lines(names: dict[str, str]) -> list[str]:
    """`from <module> import <names>` lines for `names` (name -> module)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name, module in names.items():
        groups[module].append(name)
    return [f"from {m} import {', '.join(sorted(n))}" for m, n in sorted(groups.items())]


def render_sync_package(models: dict[str, Model]) -> str:
    """`finalpos_sync/__init__.py`: real imports for type checkers, each name imported on first
    access at run time (except `EAGER`); the models come from `finalpos_sync.types`."""
    names = async_exports(models)
    names["Page"] = "finalpos_async._pagination"
    lazy = sorted(n for n in names if n not in EAGER)
    lines = [HEADER + f'"""{PACKAGE_DOC}"""', "", "from __future__ import annotations", ""]
    lines += ["import importlib", "from typing import TYPE_CHECKING, Any", ""]
    lines += import_lines({n: names[n] for n in EAGER})
    lines += ["from finalpos_sync import types", "", "if TYPE_CHECKING:"]
    lines += ["    " + line for line in import_lines({n: names[n] for n in lazy})]
    lines += ["    from finalpos_sync.types import *  # noqa: F403 - the models, as listed below"]
    lines += ["", "__all__ = [", *(f'    "{n}",' for n in sorted(names)), "]"]
    lines += ["__all__ += types.__all__", "", *LAZY_NOTE]
    lines += ["_LAZY = {", *(f'    "{n}": "{names[n]}",' for n in lazy), "}", "", ""]
    lines += [
        "def __getattr__(name: str) -> Any:",
        "    module = _LAZY.get(name)",
        "    if module is None and name not in types.__all__:",
        '        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")',
        '    value = getattr(importlib.import_module(module or "finalpos_sync.types"), name)',
        "    globals()[name] = value  # later lookups are plain module attributes",
        "    return value",
        "",
        "",
        "def __dir__() -> list[str]:",
        "    return sorted({*globals(), *__all__})",
    ]
    return "\n".join(lines) + "\n"
