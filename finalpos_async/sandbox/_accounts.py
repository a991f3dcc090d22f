"""The sandbox's accounts: each accepted API key is a company of its own, as a tenant of the API is.

A key's records, counters and idempotency keys are invisible to every other key, and its rate
limit is its own. The first key's records keep the bare collection names (so a file written by a
one-key sandbox reads the same, and `Sandbox.storage` shows them as before); another key's live in
collections named ``CustomerDto@<its fingerprint>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import attrs

__all__ = ["Account", "Accounts", "company_id_for", "key_fingerprint"]


def company_id_for(api_key: str) -> str:
    """A stable 24-hex company id derived from the key (the key itself is never shown)."""
    return hashlib.sha256(b"finalpos-sandbox-company:" + api_key.encode()).hexdigest()[:24]


def key_fingerprint(api_key: str) -> str:
    """16 hex digits of a SHA-256 of the key: the client's `credentials_fingerprint` of it.

    The same derivation as the client's, so a test can match a request log's lines to a client
    without either side showing the key.
    """
    return hashlib.sha256(b"finalpos-credentials:" + api_key.encode()).hexdigest()[:16]


@attrs.frozen
class Account:
    """One accepted key's company: its id, its key's fingerprint, where its records live."""

    company_id: str
    fingerprint: str
    suffix: str
    """Added to every collection name: "" for the first key, ``@<fingerprint>`` for the others."""

    def collection(self, name: str) -> str:
        """The store's name of this account's collection `name`."""
        return name + self.suffix


class Accounts:
    """The accepted keys and their accounts, in the order given (the first is the default)."""

    def __init__(self, api_keys: Iterable[str]) -> None:
        keys = list(api_keys)
        if not keys:
            raise ValueError("api_keys: give at least one key")
        if len(set(keys)) != len(keys):
            raise ValueError("api_keys: a key is given twice; give each key once")
        self._by_key: Mapping[str, Account] = {
            key: Account(
                company_id=company_id_for(key),
                fingerprint=key_fingerprint(key),
                suffix="" if n == 0 else "@" + key_fingerprint(key),
            )
            for n, key in enumerate(keys)
        }

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, api_key: object) -> bool:
        return api_key in self._by_key

    def get(self, api_key: str | None) -> Account | None:
        """The account of an accepted key, or None for any other key (or none)."""
        return None if api_key is None else self._by_key.get(api_key)
