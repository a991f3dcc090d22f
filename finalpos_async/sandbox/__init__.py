"""The embedded Final POS sandbox: a stateful local server driven by the package's spec.

::

    from finalpos_async.sandbox import Sandbox

    async with Sandbox() as sb:
        client = AsyncFinalPOS(api_key=sb.api_key, base_url=sb.url)

From a shell: ``python -m finalpos_async.sandbox --port 8000 [--db FILE] [--faults ...]``.
For tests: the pytest plugin `finalpos_async.sandbox.pytest_plugin` (loaded automatically).
"""

from ._faults import FaultConfig, parse_faults
from ._sandbox import Sandbox
from ._serve import main, serve

__all__ = ["FaultConfig", "Sandbox", "main", "parse_faults", "serve"]
