"""One page of `finalpos export` as the writers get it, and a writer's fast path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["ExportPage", "FastPath"]

FastPath = Callable[[list[Any]], Any]
"""A writer's own check of a page's records: its form of the page (an Arrow batch, say) when
every record would pass the model check, else None (the model check then runs)."""


@attrs.frozen
class ExportPage:
    """One checked page: its records as the API sent them, and the fast path's form of them
    (None when the page went through the model check)."""

    records: list[Any]
    fast: Any = None
