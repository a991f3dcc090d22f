"""The bulk package's name for the shared token bucket (it lives in `finalpos_async._rate_limit`).

The same class paces a whole client (`AsyncFinalPOS(rate_limit=...)`, every HTTP attempt) and a
bulk run (`client.bulk.run(..., rate_limit=...)`, every item started); see `BulkRunner.run`.
"""

from __future__ import annotations

from .._limiter import Limiter
from .._rate_limit import RateLimiter

__all__ = ["Limiter", "RateLimiter"]
