"""Helpers the bulk benchmarks share: a sandbox in a process of its own, this process's RSS, and
another process's CPU time.

`benchmarks/` is not a package: the scripts run as `python benchmarks/X.py`, so this module sits
on `sys.path` beside them and is imported as `_sandbox_process`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_READY = "Final POS sandbox listening on "


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc: `OSError` elsewhere)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Terminate `proc` (kill it after 10 s) and reap it; a no-op when it has exited."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_sandbox(*extra_args: str) -> tuple[subprocess.Popen[str], str]:
    """A sandbox in its own process on a free port; returns (process, url).

    `extra_args` go on its command line (e.g. `--faults SPEC`).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "finalpos_async.sandbox", "--port", "0", "--quiet", *extra_args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        if line.startswith(SANDBOX_READY):
            return proc, line[len(SANDBOX_READY) :].strip()
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError("the sandbox did not start")
