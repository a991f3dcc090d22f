"""finalpos: the async-first Python SDK for the Final POS REST API."""

from ._types import NOT_GIVEN, NotGiven, RequestOptions
from ._version import __version__

__all__ = ["NOT_GIVEN", "NotGiven", "RequestOptions", "__version__"]
