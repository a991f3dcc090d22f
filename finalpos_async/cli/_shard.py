"""`finalpos import --shard K/N`: which rows of a file one of N machines imports.

A row belongs to shard `1 + (first 8 bytes of SHA-256 of its identity) mod N`, its identity being
its --key value or its content digest (the import's own rule, see `_plan.Identities`). The hash
depends on nothing but the identity, so every machine, Python version and run agrees; the N
shards of one file are a partition of its rows. A row with no identity (it does not parse) goes
by its line number instead, so exactly one shard reports it.

An identity is imported by its own shard only: each shard has its own journal, and a row sent
by two shards (two journals) would be created twice. All shards of one import share one job id
(`shared_job_id`), so they send a row under the same Idempotency-Key even if N changes between
runs: a server that honours the key answers the second send with the first one's record.
"""

from __future__ import annotations

import hashlib
import re

import attrs
import click

__all__ = ["Shard", "parse_shard", "shard_of", "shard_option", "shared_job_id"]

_FORM = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def shard_of(identity: str, count: int) -> int:
    """The shard (1 to `count`) that imports the row with this identity (the rule of a
    worker's leased chunks too, `bulk.chunk_of`)."""
    from ..bulk import chunk_of  # loaded here: `finalpos export` does not load the bulk engine

    return chunk_of(identity, count)


@attrs.frozen
class Shard:
    """Shard `index` of `count` (both counted from 1, as the command line says them); with
    `leased`, a chunk a worker leased (`--worker`): one of many parts of one job and journal."""

    index: int
    count: int
    leased: bool = False

    def owns(self, identity: str) -> bool:
        """The row with this identity is this shard's to import."""
        return shard_of(identity, self.count) == self.index

    def owns_line(self, line: int) -> bool:
        """A row with no identity (it does not parse) at this line is this shard's to report."""
        return self.owns(f"line {line}")

    @property
    def label(self) -> str:
        """`2/4`, as the command line says it."""
        return f"{self.index}/{self.count}"

    @property
    def noun(self) -> str:
        """`shard`, or `chunk` for a leased one."""
        return "chunk" if self.leased else "shard"

    @property
    def file_tag(self) -> str:
        """`shard-2-of-4` (`chunk-2-of-4`): part of the default journal and failed-rows file
        names."""
        return f"{self.noun}-{self.index}-of-{self.count}"


def shard_option(_ctx: click.Context, _param: click.Parameter, text: str | None) -> Shard | None:
    """The `--shard` option's click callback: its `Shard`, or None when not given."""
    try:
        return None if text is None else parse_shard(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def parse_shard(text: str) -> Shard:
    """`K/N` (1 <= K <= N) as a `Shard`; ValueError names the option and the fix."""
    match = _FORM.fullmatch(text)
    if match is None:
        raise ValueError(f"--shard {text!r}: give it as K/N, e.g. --shard 2/4 (shard 2 of 4)")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 1 <= index <= count:
        raise ValueError(
            f"--shard {text}: K must be between 1 and N (N >= 1), e.g. --shard 1/{max(count, 2)}"
        )
    return Shard(index, count)


def shared_job_id(target: str, operation: str, key_field: str | None, file_name: str) -> str:
    """The job id every shard of one import uses (so they derive the same idempotency keys).

    From what all shards share: the target, the create method, the --key rule and the file's
    name (not its directory, which may differ between machines).
    """
    text = "\0".join(("finalpos import --shard", target, operation, key_field or "", file_name))
    return hashlib.sha256(text.encode()).hexdigest()[:32]
