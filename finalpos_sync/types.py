"""The models of the API: the `finalpos_async.types` classes, re-exported.

Each is imported on first access (as in `finalpos_async.types`): building every model class at
import would cost about 100 ms that a script using two of them should not pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from finalpos_async import types as _models

if TYPE_CHECKING:
    from finalpos_async.types import *  # noqa: F403 - every model, the names of `__all__`

__all__: list[str] = []
__all__ += _models.__all__


def __getattr__(name: str) -> Any:
    if name not in _models.__all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_models, name)
    globals()[name] = value  # later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
