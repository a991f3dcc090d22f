"""The garbage collector's settings for a `finalpos` process running a long command.

An import or an export allocates a few hundred objects per row (models, decoded JSON), nearly
all freed by reference counting; with the default settings the collector still walks the young
generation every 700 allocations and, now and then, the whole heap (modules, the spec, the
parser's tables). `tune_for_bulk_work()` freezes what start-up left alive and collects the young
generation every 10,000 allocations instead, but only in the command's own process (`cli.main`
sets `own_process`): never when the command runs inside another program (its tests, say), whose
heap the library does not touch.
"""

from __future__ import annotations

import gc

__all__ = ["own_process", "tune_for_bulk_work"]

own_process = False
"""Set by `finalpos` (`cli.main`) when this process is the command's own."""


def tune_for_bulk_work() -> None:
    """After start-up, in the command's own process: freeze the heap, collect less often."""
    if own_process:
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)
