"""`run(sb, *args)`: the `finalpos` command in-process against a sandbox, output captured."""

from __future__ import annotations

from click.testing import CliRunner, Result

from finalpos_async.cli._app import cli
from finalpos_async.sandbox import Sandbox


def run(sb: Sandbox | None, *args: str, env: dict[str, str] | None = None) -> Result:
    """`finalpos [--api-key K --base-url U] ARGS` (no prefix for `sb=None`), output captured."""
    prefix: list[str] = []
    if sb is not None:
        assert sb.url is not None  # started: run_in_thread() sets it
        prefix = ["--api-key", sb.api_key, "--base-url", sb.url]
    return CliRunner().invoke(cli, [*prefix, *args], env=env, catch_exceptions=False)
