"""Fault injection for testing clients: rate limit, a seeded fault rate, scripted faults.

All of it is off by default. Three independent mechanisms:

- **Scripted** (header ``x-sandbox-fault: 503,503,ok``): each request carrying the same script and
  the same *script key* takes the next step; after the last step the script starts over. A client
  retrying one logical call re-sends the same headers, so its attempts see 503, 503, then success.
  The script key is the ``x-sandbox-fault-key`` header if given, else the ``Idempotency-Key``, else
  the method and path, within the request's API key (two tenants' scripts never share a
  position). Steps: ``ok``; an HTTP status (``503``; ``503:2`` adds ``Retry-After: 2``;
  ``429`` always carries ``Retry-After``); ``reset`` (the connection is dropped without an answer);
  ``delay`` or ``delay:SECONDS`` (the answer is held back, then given normally). A step with
  ``-after`` (``reset-after``, ``503-after``) lets the request take effect first and then loses
  its answer: the case a retry with the same ``Idempotency-Key`` must not duplicate.
  ``misfit`` lets a write (POST, PUT, PATCH) take effect and answers its 2xx status with a body
  that does not fit the response model: the record minus its ``id`` (and ``_id``), as a server
  that changed its answer's shape would. An error answer, and any read, is given as is.
- **Fault rate** (``FaultConfig(rate=0.2, kinds=("500", "503", "reset"))``): each request without a
  script fails with probability `rate`, the kind drawn from `kinds` (any step but ``ok``:
  ``misfit`` too), from a `random.Random(seed)`, so the same seed and the same requests give the
  same outcomes.
- **Rate limit** (``rate_limit=50`` requests per second, ``burst`` tokens): a token bucket per API
  key, as an API limits each tenant on its own (with one key, one bucket over all requests;
  requests without an accepted key share one more); an empty bucket answers 429 with a
  ``Retry-After`` of the time until the next token, at least ``retry_after``.

Delays and Retry-After values are configurable (and may be fractions of a second) so client
test suites stay fast: a fractional wait goes out as ``retry-after-ms`` (exact) next to a
``Retry-After`` rounded up to whole seconds, the only form that header allows.
"""

from __future__ import annotations

import math
import random
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import attrs

from .._constants import SANDBOX_FAULT_DELAY, SANDBOX_FAULT_RETRY_AFTER, SANDBOX_FAULT_SCRIPTS

__all__ = ["Fault", "FaultConfig", "FaultInjector", "parse_fault_script", "parse_faults"]

SCRIPT_HEADER = "x-sandbox-fault"
SCRIPT_KEY_HEADER = "x-sandbox-fault-key"
_KINDS = ("500", "502", "503", "reset", "delay")
# A 2xx answer without the record's id: the request took effect, the body does not fit the model.
MISFIT = "misfit"


def _check_rate(_config: object, _attribute: object, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"faults rate must be between 0 and 1, got {value!r}")


@attrs.frozen(kw_only=True)
class FaultConfig:
    """What the sandbox injects. The zero value (the default) injects nothing.

    - `rate`: probability (0..1) that a request without a script gets a fault.
    - `kinds`: the faults drawn from: HTTP statuses as strings, "reset", "delay", each with an
      optional "-after" (the request takes effect, then its answer is lost), and "misfit" (a
      write takes effect; its 2xx answer lacks the record's id).
    - `delay`: seconds a "delay" fault holds the answer (set it past the client's timeout).
    - `retry_after`: the Retry-After (seconds, may be fractional) of scripted and drawn 429s, and
      the least one the rate limit answers (it answers the time until its next token if longer).
    - `rate_limit`: requests per second allowed per API key before 429; None for no limit.
    - `burst`: bucket size of each key's rate limit (defaults to `rate_limit`, at least 1).
    - `seed`: seed of the fault-rate random generator (None: a fresh random seed).
    """

    # A validator argument rather than `@rate.validator`: type checkers without the attrs
    # plugin (pyright) see the field as a float, which has no `.validator`.
    rate: float = attrs.field(default=0.0, validator=_check_rate)
    kinds: tuple[str, ...] = _KINDS
    delay: float = SANDBOX_FAULT_DELAY
    retry_after: float = SANDBOX_FAULT_RETRY_AFTER
    rate_limit: float | None = None
    burst: int | None = None
    seed: int | None = None

    @property
    def enabled(self) -> bool:
        """Whether anything is injected without a script header."""
        return self.rate > 0.0 or self.rate_limit is not None


def parse_faults(text: str) -> FaultConfig:
    """Parse the command line form: ``rate=0.1,kinds=500+503+reset,delay=2,rate-limit=50``.

    Keys: rate, kinds (``+`` or ``|`` separated), delay, retry-after, rate-limit, burst, seed.
    """
    # `Any`: each value is converted for its key below, and the attrs validators check the rest.
    values: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"faults: expected key=value, got {part!r}")
        raw = raw.strip()
        try:
            if key == "kinds":
                kinds = tuple(k for k in raw.replace("|", "+").split("+") if k)
                for kind in kinds:
                    _check_kind(kind)
                values[key] = kinds
            elif key in ("rate", "delay", "retry_after", "rate_limit"):
                values[key] = float(raw)
            elif key in ("burst", "seed"):
                values[key] = int(raw)
            else:
                raise ValueError(
                    f"faults: unknown key {key!r} (known: rate, kinds, delay, retry-after, "
                    "rate-limit, burst, seed)"
                )
        except ValueError as exc:
            if str(exc).startswith("faults:"):
                raise
            raise ValueError(f"faults: bad value for {key!r}: {raw!r}") from exc
    return FaultConfig(**values)


def _check_kind(kind: str) -> None:
    base = kind.removesuffix("-after")
    if base in ("reset", "delay") or kind in ("ok", MISFIT):
        return
    if base.isdigit() and 100 <= int(base) <= 599:
        return
    raise ValueError(
        f"faults: unknown fault kind {kind!r} (an HTTP status, reset, delay or misfit; add "
        "-after, as in 503-after, to apply it after the request took effect)"
    )


@attrs.frozen
class Fault:
    """One fault to apply to a request: an error status, a dropped connection or a delay."""

    kind: str  # "status", "reset", "delay" or "misfit" (always `after`)
    status: int = 0
    retry_after: float | None = None
    delay: float = 0.0
    after: bool = False
    """Applied after the request took effect (its answer is lost), not instead of it."""


def parse_fault_script(text: str, config: FaultConfig) -> list[Fault | None]:
    """Parse ``503,503:1,reset,delay:0.5,ok`` into steps (None is `ok`); ValueError if malformed."""
    steps: list[Fault | None] = []
    for raw in text.split(","):
        token = raw.strip().lower()
        if not token:
            continue
        name, _, arg = token.partition(":")
        after = name.endswith("-after")
        name = name.removesuffix("-after")
        if name == "ok" and not after:
            steps.append(None)
        elif name == MISFIT and not after and not arg:
            steps.append(Fault(MISFIT, after=True))
        elif name == "reset":
            steps.append(Fault("reset", after=after))
        elif name == "delay":
            delay = _seconds(arg, raw) if arg else config.delay
            steps.append(Fault("delay", delay=delay, after=after))
        elif name.isdigit() and 100 <= int(name) <= 599:
            status = int(name)
            retry_after = (
                _seconds(arg, raw) if arg else (config.retry_after if status == 429 else None)
            )
            steps.append(Fault("status", status=status, retry_after=retry_after, after=after))
        else:
            raise ValueError(
                f"x-sandbox-fault: unknown step {raw.strip()!r} (use ok, an HTTP status like "
                "503 or 503:2, reset, delay, delay:SECONDS or misfit; add -after, as in "
                "reset-after, to apply it after the request took effect)"
            )
    if not steps:
        raise ValueError("x-sandbox-fault: the script is empty")
    return steps


def _seconds(text: str, step: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 3600.0:
        raise ValueError(f"x-sandbox-fault: bad seconds in step {step.strip()!r}")
    return value


class FaultInjector:
    """Decides, per request, whether and how it fails."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._random = random.Random(config.seed)
        self._positions: OrderedDict[tuple[str, str], int] = OrderedDict()
        # tenant -> (tokens, when last refilled); the tenants are the accepted keys and "" (the
        # requests without one), so the map stays as small as the sandbox's list of keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def _bucket_size(self) -> int:
        if self.config.rate_limit is None:
            return 0
        return max(1, self.config.burst or int(self.config.rate_limit))

    def scripted(self, script: str, key: str) -> Fault | None:
        """The next step of `script` for `key` (raises ValueError for a malformed script)."""
        steps = parse_fault_script(script, self.config)
        slot = (key, script)
        position = self._positions.pop(slot, 0)
        self._positions[slot] = (position + 1) % len(steps)
        while len(self._positions) > SANDBOX_FAULT_SCRIPTS:
            self._positions.popitem(last=False)
        return steps[position]

    def rate_limited(self, tenant: str = "") -> Fault | None:
        """A 429 fault when `tenant`'s token bucket is empty, else None (and a token is spent).

        `tenant` names the bucket: the API key the request carries, if the sandbox accepts it.
        """
        limit = self.config.rate_limit
        if limit is None:
            return None
        now = time.monotonic()
        size = float(self._bucket_size())
        tokens, refilled = self._buckets.get(tenant, (size, now))
        tokens = min(size, tokens + (now - refilled) * limit)
        if tokens >= 1.0:
            self._buckets[tenant] = (tokens - 1.0, now)
            return None
        self._buckets[tenant] = (tokens, now)
        # an honest Retry-After: when the next token is due, but never below the configured value
        due = math.ceil((1.0 - tokens) / limit * 1000) / 1000
        return Fault("status", status=429, retry_after=max(self.config.retry_after, due))

    def random_fault(self) -> Fault | None:
        """A fault drawn at the configured rate from the seeded generator, or None."""
        if self.config.rate <= 0.0 or not self.config.kinds:
            return None
        if self._random.random() >= self.config.rate:
            return None
        kind = self._random.choice(self.config.kinds)
        if kind == "ok":
            return None
        if kind == MISFIT:
            return Fault(MISFIT, after=True)
        after = kind.endswith("-after")
        kind = kind.removesuffix("-after")
        if kind == "reset":
            return Fault("reset", after=after)
        if kind == "delay":
            return Fault("delay", delay=self.config.delay, after=after)
        status = int(kind)
        return Fault(
            "status",
            status=status,
            retry_after=self.config.retry_after if status == 429 else None,
            after=after,
        )

    def for_request(
        self, method: str, path: str, headers: Mapping[str, str], tenant: str = ""
    ) -> Fault | None:
        """The fault for one request: its script if it has one, else `tenant`'s rate limit, else
        the rate."""
        script = headers.get(SCRIPT_HEADER)
        if script:
            key = headers.get(SCRIPT_KEY_HEADER) or headers.get("Idempotency-Key") or ""
            return self.scripted(script, f"{tenant}\n{key or f'{method} {path}'}")
        return self.rate_limited(tenant) or self.random_fault()
