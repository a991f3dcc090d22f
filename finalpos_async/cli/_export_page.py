"""One page of `finalpos export` as the writers get it, and a writer's fast path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["ExportPage", "FastPath"]

FastPath = Callable[[list[Any]], Any]
"""A writer's own check of a page's records: its form of the page (an Arrow batch, say) when
every record would pass the model check as far as it can tell, else None (the model check then
runs). A writer that ends its check later (Parquet's, a row group at a time) asks the page's
`recheck` for a page that fails it there."""


@attrs.frozen
class ExportPage:
    """One checked page: its records as the API sent them, the fast path's form of them (None
    when the page went through the model check), and for a page the fast path took, how to
    check it by the models after all."""

    records: list[Any]
    fast: Any = None
    recheck: Callable[[], list[Any]] | None = None
    """The records decoded again from the response and checked by the models, raising the
    error a typed call gives (naming the record and field); None when `records` is all there
    is. Holds the response's body, not its decoded records."""
