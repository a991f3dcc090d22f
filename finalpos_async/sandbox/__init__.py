"""The embedded Final POS sandbox: a stateful local server driven by the package's spec.

::

    from finalpos_async.sandbox import Sandbox

    async with Sandbox() as sb:
        client = AsyncFinalPOS(api_key=sb.api_key, base_url=sb.url)

From a shell: ``python -m finalpos_async.sandbox --port 8000 [--db FILE] [--faults ...]``.
`AsyncFinalPOS(sandbox=True)` runs one through `SandboxEndpoint`, started on its first call.
For tests: the pytest plugin `finalpos_async.sandbox.pytest_plugin` (loaded automatically).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._endpoint import SandboxEndpoint
    from ._faults import FaultConfig, parse_faults
    from ._sandbox import Sandbox
    from ._serve import main, serve

__all__ = ["FaultConfig", "Sandbox", "SandboxEndpoint", "main", "parse_faults", "serve"]

# Loaded on first use: the pytest plugin lives in this package, and pytest imports it (and so
# this module) in every run wherever the package is installed; `Sandbox` pulls in aiohttp's
# server, which such a run must not pay for unless a sandbox fixture is used.
_LAZY_MODULES = {
    "FaultConfig": "_faults",
    "parse_faults": "_faults",
    "Sandbox": "_sandbox",
    "SandboxEndpoint": "_endpoint",
    "main": "_serve",
    "serve": "_serve",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY_MODULES.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value  # later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
