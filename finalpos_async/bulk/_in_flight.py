"""Ending a bulk run's in-flight items when it stops, is cancelled or is left early."""

from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

from ._results import ItemResult

__all__ = ["abandon"]

_T = TypeVar("_T")

log = logging.getLogger("finalpos.bulk")


async def abandon(
    in_flight: set[asyncio.Future[ItemResult[_T]]], drain: float
) -> list[ItemResult[_T]]:
    """Give in-flight items `drain` seconds to finish, cancel the rest; returns the results of
    those that ended, and takes them out of `in_flight` (what is left there was lost to a second
    cancel while cancelling: it cannot be counted as anything but cancelled)."""
    if not in_flight:
        return []
    pending: set[asyncio.Future[ItemResult[_T]]] = set(in_flight)
    try:
        _, pending = await asyncio.wait(in_flight, timeout=drain)
    except BaseException:
        # Cancelled again while draining: stop waiting, cancel everything now.
        pending = {task for task in in_flight if not task.done()}
    for task in pending:
        task.cancel()
    if pending:
        try:
            await asyncio.wait(pending)
        except BaseException:
            log.warning("bulk run: %d in-flight items abandoned while cancelling", len(pending))
    ended = [task for task in in_flight if task.done() and not task.cancelled()]
    in_flight.difference_update(ended)
    return [task.result() for task in ended]
