"""The only place the package touches a dependency's private internals; each touch says why.

Tested on the floor aiohttp (constraints/floors.txt) and the newest installed
(tests/client/test_mock_transport.py, `test_connection_retry_is_off`).
"""

from __future__ import annotations

import aiohttp

__all__ = ["disable_connection_retry"]


def disable_connection_retry(session: aiohttp.ClientSession) -> None:
    """Stop aiohttp from silently repeating a request once when a pooled connection drops.

    aiohttp (3.9+) re-sends an idempotent request on a fresh connection when a keep-alive one
    turns out dead, invisibly to us. Our retry loop owns every repeat, so that attempts,
    backoff, the retry budget, rate-limit tokens and the deadline stay exact (the test suite
    counts the attempts a server sees). aiohttp has no public switch for it; this private flag
    is the one its own `aiohttp.test_utils.TestClient` turns off. Where the flag is missing
    (a future aiohttp), nothing is set and the extra repeat is aiohttp's again.
    """
    if hasattr(session, "_retry_connection"):
        # No public API for this (see above); the flag exists on every aiohttp >= 3.9.
        session._retry_connection = False  # pyright: ignore[reportPrivateUsage]  # no public switch
