"""Synchronous facade over `finalpos_async` (filled in by the sync-facade work)."""

from finalpos_async._version import __version__

__all__ = ["__version__"]
