"""How the user ran `finalpos import`, to print a follow-up command that repeats it: the global
options (`command_prefix`) and the import's own (`rerun_flags`), the API key never shown."""

from __future__ import annotations

import shlex
from urllib.parse import urlsplit

import click

from .._constants import REDIS_URL_ENV
from ._connect import proxy_words

__all__ = ["command_prefix", "rerun_flags"]


def rerun_flags(ctx: click.Context) -> str:
    """The import's own options given on the command line that a follow-up run should repeat.

    Not --encoding (a failed-rows file is UTF-8), --key, --journal, --failed-file, --shard (its
    header and its path carry them) or --format (the instruction adds it when needed). A
    --redis-url with a password is named by its environment variable, never printed.
    """
    words: list[str] = []
    for name, flag in (
        ("concurrency", "--concurrency"),
        ("rate", "--rate"),
        ("burst", "--burst"),
        ("redis_url", "--redis-url"),
        ("redis_key", "--redis-key"),
        ("drain_timeout", "--drain-timeout"),
        ("max_field_bytes", "--max-field-bytes"),
    ):
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            value = str(ctx.params[name])
            if name == "redis_url" and urlsplit(value).password is not None:
                words += [flag, f'"${REDIS_URL_ENV}"']
            else:
                words += [flag, shlex.quote(value)]
    if ctx.params.get("resend_unknown"):
        words.append("--resend-unknown")
    if ctx.params.get("keep_whitespace"):
        # A failed-rows file of a CSV import holds its cells as read: they are trimmed again
        # when it is imported, unless the flag is repeated (else their identity would change).
        words.append("--keep-whitespace")
    return " ".join(words)


def command_prefix(ctx: click.Context) -> str:
    """`finalpos` and the global options given on the command line (the key never shown)."""
    root = ctx.find_root()
    words = ["finalpos"]
    for name, flag in (
        ("api_key", "--api-key"),
        ("base_url", "--base-url"),
        ("sandbox_db", "--sandbox-db"),
        ("max_retries", "--max-retries"),
        ("timeout", "--timeout"),
    ):
        if root.get_parameter_source(name) is not click.core.ParameterSource.COMMANDLINE:
            continue  # from the environment (or unset): the same environment applies again
        value = "$FINALPOS_API_KEY" if name == "api_key" else str(root.params[name])
        words += [flag, shlex.quote(value) if name != "api_key" else value]
    return " ".join(words + proxy_words(root))
