"""The Final POS OpenAPI document shipped with the package, and what reads its schemas.

One `$ref` resolver (`inline_schema`, `component`) and one value checker (`check_value`,
`format_problem`, `nullable`), shared by the sandbox (routes, request checks) and the CLI (import
rows, CSV columns), so that both read the spec, and word their verdicts, the same way.
The document itself is `finalpos-openapi.json` in this folder (`load_spec()` reads it).
"""

from ._schema import component, inline_schema, load_spec
from ._values import check_value, format_problem, nullable

__all__ = ["check_value", "component", "format_problem", "inline_schema", "load_spec", "nullable"]
