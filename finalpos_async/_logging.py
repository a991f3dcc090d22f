"""The `finalpos` logger: silent by default, switched on with `FINALPOS_LOG=debug|info`.

One line per HTTP attempt (method, path, status, attempt, elapsed ms); debug adds the retry
decisions. Nothing logged ever contains the API key (headers are never logged).
"""

from __future__ import annotations

import logging
import os

from ._constants import LOG_ENV

__all__ = ["logger", "setup_logging"]

logger = logging.getLogger("finalpos")

_configured = False
_OFF = frozenset({"0", "off", "false", "no", "none", "warning", "error"})


def setup_logging() -> None:
    """Apply `FINALPOS_LOG` once per process (later calls are free)."""
    global _configured
    if _configured:
        return
    _configured = True
    raw = os.environ.get(LOG_ENV, "")
    level_name = raw.strip().lower()
    levels = {"debug": logging.DEBUG, "info": logging.INFO}
    level = levels.get(level_name)
    if level is None:
        if level_name and level_name not in _OFF:
            # A typo would otherwise leave the user waiting for logs that never come.
            # One line on stderr (logging's last-resort handler) unless the app set up logging.
            logger.warning(
                "%s=%r is not a log level finalpos knows; use %s=info or %s=debug "
                "(finalpos logging stays off)",
                LOG_ENV,
                raw,
                LOG_ENV,
                LOG_ENV,
            )
        return
    logger.setLevel(level)
    # Only add our own handler when the application configured none for us.
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
