"""`Idempotency-Key` handling: replay the first answer, refuse a key reused for another body.

A request with a key seen before and the same method, path and body gets the first response again
(with `Idempotent-Replayed: true`) and nothing is created twice; the same key with a different
body answers 409. Concurrent requests with one key are serialised: the second waits for the first
and then replays it. Answers of 500 and above are not kept, so a retry after a server error is
processed again (as Stripe does).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import cast

import attrs

from . import _json
from ._errors import SandboxHTTPError
from ._storage import Storage, StoredResponse

__all__ = ["IDEMPOTENCY_HEADER", "REPLAYED_HEADER", "Idempotency", "fingerprint"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"


def fingerprint(method: str, path: str, body: bytes) -> str:
    """A digest of what makes two requests "the same": method, path and the JSON body.

    The body is compared as parsed JSON (key order and whitespace do not matter), falling back to
    the raw bytes when it is not JSON.
    """
    try:
        canonical = _json.dumps(_sorted(_json.loads(body))) if body.strip() else b""
    except ValueError:
        canonical = body
    digest = hashlib.sha256()
    digest.update(f"{method} {path}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


def _sorted(value: object) -> object:
    if isinstance(value, dict):
        fields = cast("dict[str, object]", value)  # decoded JSON: keys are strings
        return {k: _sorted(fields[k]) for k in sorted(fields)}
    if isinstance(value, list):
        return [_sorted(v) for v in cast("list[object]", value)]
    return value


@attrs.define
class Idempotency:
    """Replays and conflicts for idempotency keys, backed by the sandbox's storage."""

    storage: Storage
    # Lambdas, not `dict`: a bare `dict` factory is typed `dict[Unknown, Unknown]`.
    _locks: dict[str, asyncio.Lock] = attrs.field(factory=lambda: {})
    _users: dict[str, int] = attrs.field(factory=lambda: {})

    async def run(
        self,
        scope: str,
        key: str,
        print_: str,
        handler: Callable[[], Awaitable[tuple[int, bytes]]],
    ) -> tuple[int, bytes, bool]:
        """Answer (status, body, replayed) for a keyed request; `handler` runs at most once."""
        slot = f"{scope}\x00{key}"
        lock = self._locks.setdefault(slot, asyncio.Lock())
        self._users[slot] = self._users.get(slot, 0) + 1
        try:
            async with lock:
                stored = self.storage.get_response(slot)
                if stored is not None:
                    if stored.fingerprint != print_:
                        raise SandboxHTTPError(
                            409,
                            f"Idempotency-Key {key!r} was already used with a different request "
                            "(method, path or body); use a new key for a new request.",
                        )
                    return stored.status, stored.body, True
                status, body = await handler()
                if status < 500:
                    self.storage.put_response(slot, StoredResponse(print_, status, body))
                return status, body, False
        finally:
            # forget the lock once nobody holds or waits for it, so keys do not pile up
            self._users[slot] -= 1
            if not self._users[slot]:
                del self._users[slot]
                del self._locks[slot]
