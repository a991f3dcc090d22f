"""Every default of the SDK in one place: timeouts, retries, pool sizes and caps."""

from __future__ import annotations

DEFAULT_BASE_URL = "https://api.finalpos.com"
API_KEY_ENV = "FINALPOS_API_KEY"
BASE_URL_ENV = "FINALPOS_BASE_URL"
LOG_ENV = "FINALPOS_LOG"
SANDBOX_ENV = "FINALPOS_SANDBOX"

# Timeouts, in seconds. `read` is per attempt; the deadline covers every attempt and backoff sleep.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
POOL_TIMEOUT = 30.0
DEADLINE = 120.0

# Retry policy: full-jitter exponential backoff, delay = U(0, min(cap, base * 2**retry)).
MAX_RETRIES = 3
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
RETRY_AFTER_CAP = 60.0
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

# Retry budget, botocore "standard" mode: a failing API is not hammered by a bulk job.
RETRY_BUDGET_TOKENS = 500
RETRY_COST = 5
RETRY_TIMEOUT_COST = 10
RETRY_SUCCESS_REFUND = 1

# Connection pool, sized for bulk work; bulk concurrency stays at or under `POOL_LIMIT_PER_HOST`.
POOL_LIMIT = 100
POOL_LIMIT_PER_HOST = 64
KEEPALIVE_TIMEOUT = 15.0
DNS_CACHE_TTL = 300

# Response handling.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
ERROR_TEXT_LIMIT = 2000

# Pagination and bulk.
DEFAULT_PAGE_LIMIT = 100
BULK_CONCURRENCY = 16
