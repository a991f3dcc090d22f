"""Every default of the SDK in one place: timeouts, retries, pool sizes and caps."""

from __future__ import annotations

DEFAULT_BASE_URL = "https://api.finalpos.com"
API_KEY_ENV = "FINALPOS_API_KEY"
BASE_URL_ENV = "FINALPOS_BASE_URL"
REDIS_URL_ENV = "FINALPOS_REDIS_URL"
PROXY_ENV = "FINALPOS_PROXY"  # the CLI's --proxy (the library reads HTTP(S)_PROXY: trust_env)
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
# Response headers that may carry the server's request id (first one present wins).
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-correlation-id", "x-amzn-requestid")

# Pagination and bulk.
DEFAULT_PAGE_LIMIT = 100
BULK_CONCURRENCY = 16
# Rate limiter (`rate_limit=` on the client or a bulk run): the token bucket holds this many
# seconds' worth of requests (at least one), so a quiet client may burst that much at once.
RATE_LIMIT_BURST_SECONDS = 1.0
# Rate limiters (local and Redis): a slot is used if the caller wakes up for it at most
# max(MIN_LATE_LIMIT, half the burst's worth of time) late, and given up for a new one at most
# MAX_MISSED_SLOTS times in a row (a process starved of CPU for good still sends, late).
MIN_LATE_LIMIT = 0.005
MAX_MISSED_SLOTS = 3
# `finalpos import --rate`'s default burst, in seconds of the rate (at least 1 request): a steady
# import gains nothing from bursts, while a bucket that refills during a stall and then releases
# a second's worth at once meets a smaller API burst with a storm of 429s whose equal
# Retry-After makes them come back together.
IMPORT_BURST_SECONDS = 0.1
# `finalpos import --redis-url`: how long one Redis round trip may take before Redis counts as
# down. Longer than the library's default (0.5 s, for request paths): a batch job on a loaded
# machine can wait, and a late answer must not end a shard's run.
IMPORT_REDIS_TIMEOUT = 2.0
# `finalpos import --max-field-bytes`: the largest CSV cell or JSON Lines line read (UTF-8 bytes);
# a larger one is an invalid row, read to its end without being held. Real cells (notes, an
# embedded JSON document) stay far below it; the cap bounds what one row can cost in memory.
IMPORT_MAX_FIELD_BYTES = 16 * 1024 * 1024
# After stop() or Ctrl-C, in-flight bulk items get this long to finish before they are cancelled.
BULK_DRAIN_TIMEOUT = 30.0
# A bulk run stops starting items after this many consecutive items could not reach the target
# (refused, DNS, TLS): no item can fix that, and sending the rest would only fail them too.
BULK_UNREACHABLE_STREAK = 5
# ... and after `concurrency` + this many consecutive items whose answers were lost (5xx,
# resets, timeouts): an outage, where every further item adds one more unknown outcome.
BULK_FAILING_STREAK = 10
# Before resuming, a bulk run checks that the target still holds up to this many of the records
# its journal says were created (one GET each); all of them missing means another target.
BULK_SPOT_CHECKS = 3
# A bulk run journals the intents of this many items (at least `concurrency`) in one commit
# before sending any of them: one synced commit per window, not per item.
BULK_INTENT_WINDOW = 64
# After its main pass, a bulk run settles what is left (lost answers looked up, the rest and
# items refused before processing sent again) in at most this many rounds, while each settles
# something; before a round after the first it pauses BULK_SETTLE_PAUSE s, doubled each round.
BULK_SETTLE_ROUNDS = 5
# A fresh journal against a target that holds records looks items up before sending them, this
# many at a time (one streamed pass over the target per chunk; memory bounded by the chunk).
BULK_LOOKUP_FIRST_CHUNK = 10_000
BULK_SETTLE_PAUSE = 1.0
# `finalpos import` prints a plain progress line this often when stderr is not a terminal.
PROGRESS_LINE_INTERVAL = 5.0
# The bulk journal commits every JOURNAL_BATCH_SIZE records or JOURNAL_FLUSH_INTERVAL seconds.
JOURNAL_BATCH_SIZE = 500
JOURNAL_FLUSH_INTERVAL = 1.0
# A PostgreSQL journal (`journal="postgresql://..."`) waits this long (seconds) to connect, unless
# its URL sets connect_timeout: an unreachable server is an error, not a hang.
JOURNAL_CONNECT_TIMEOUT = 10
# Leased chunks (`bulk._leases`): seconds a claim or renewal holds a chunk (renewed every third
# of it; a killed worker's chunk is taken over at most this long after its last renewal), and
# the chunks a `--worker` job is split into unless --chunks says otherwise.
DEFAULT_LEASE = 30.0
WORKER_CHUNKS = 16

# close() ends the calls in flight, then waits this long at most for them to unwind (release
# their connections) before it closes the pool.
CLOSE_UNWIND_TIMEOUT = 5.0

# Sync facade (finalpos_sync): its private loop thread.
SYNC_LOOP_THREAD_NAME = "finalpos-sync-loop"
SYNC_CANCEL_GRACE = 5.0  # seconds a cancelled call may take to unwind after Ctrl-C
SYNC_CLOSE_TIMEOUT = 30.0  # seconds close() waits for the async client to close on the loop
# Sync bulk runs: results finished on the loop but not yet taken by the iterating thread (at
# most this many; then the run waits), and how often a waiting thread checks the loop is alive.
SYNC_BULK_BUFFER = 256
SYNC_BULK_POLL = 0.5

# Sandbox (finalpos_async.sandbox): the embedded local server.
SANDBOX_HOST = "127.0.0.1"  # never another interface unless asked: it accepts a known key
SANDBOX_API_KEY = "sk_sandbox_finalpos"  # the key accepted when none is configured
SANDBOX_MAX_BODY_SIZE = 1024 * 1024  # bytes; larger bodies answer 413
SANDBOX_SHUTDOWN_TIMEOUT = 1.0  # seconds close() lets in-flight (e.g. delayed) requests finish
SANDBOX_START_TIMEOUT = 10.0  # seconds run_in_thread() waits for the server to listen
SANDBOX_FAULT_DELAY = 2.0  # seconds a "delay" fault holds an answer (set it past client timeouts)
SANDBOX_FAULT_RETRY_AFTER = 1.0  # seconds, the Retry-After of injected 429s (fractions allowed)
SANDBOX_FAULT_SCRIPTS = 10_000  # fault-script positions remembered; the oldest are forgotten
