"""Generate the openapi-python-client peer from the package's own spec, at benchmark time.

The generated client is what a user would get by pointing `openapi-python-client` at the same
spec instead of installing finalpos. It is written into a temporary folder for each run and
never committed; generation takes about two seconds.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

PACKAGE = "finalpos_peer_client"
"""Import name of the generated package (set through the generator's config file)."""

GENERATE_TIMEOUT = 180.0
"""Seconds the generator may take; it is quick, but the machine is shared."""


class PeerClient:
    """Where the generated package lives, or why there is none."""

    def __init__(self, path: Path | None, reason: str, version: str = "") -> None:
        self.path = path
        """Folder to put on `sys.path` so that `import finalpos_peer_client` works."""
        self.reason = reason
        """Why generation was skipped or failed (empty when it worked)."""
        self.version = version
        """The generator's version, for the report."""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed install counts as missing
        return False


def generate(spec: Path, workdir: Path) -> PeerClient:
    """Run openapi-python-client on `spec` into `workdir`; never raises for a missing tool."""
    if not _installed("openapi_python_client"):
        return PeerClient(
            None, "openapi-python-client is not installed (pip install -e '.[bench]')"
        )
    if not _installed("httpx"):
        return PeerClient(None, "httpx (the generated client's transport) is not installed")
    config = workdir / "peer-config.yaml"
    # No post hooks: the default ones run ruff on the output, which only costs time here.
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    out = workdir / "peer" / PACKAGE
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "openapi_python_client",
        "generate",
        "--path",
        str(spec),
        "--meta",
        "none",
        "--config",
        str(config),
        "--output-path",
        str(out),
        "--overwrite",
    ]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=GENERATE_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        return PeerClient(None, f"openapi-python-client took over {GENERATE_TIMEOUT:.0f} s")
    version = _version()
    if proc.returncode != 0 or not (out / "api" / "customer").is_dir():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return PeerClient(
            None,
            f"openapi-python-client {version} failed (exit {proc.returncode}): " + " | ".join(tail),
            version,
        )
    return PeerClient(out.parent, "", version)


def _version() -> str:
    """Return the installed generator's version string."""
    try:
        from importlib.metadata import version

        return version("openapi-python-client")
    except Exception:  # metadata missing only on broken installs; the version is cosmetic
        return "?"
