"""The error a value that does not fit a model raises, naming the field (`billing.firstName`).

Callers turn it into `ResponseValidationError` (for a response body) or leave it as the
`TypeError`/`ValueError` it is (for a request argument).
"""

from __future__ import annotations

__all__ = ["FieldError", "MissingFieldError", "json_type_name"]

_JSON_TYPE_NAMES: dict[type[object], str] = {
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}


def json_type_name(value: object) -> str:
    """The JSON name of a value's type (`string`, `number`, `object`), else its class name."""
    cls = type(value)
    return _JSON_TYPE_NAMES.get(cls, cls.__name__)


class FieldError(TypeError):
    """A value does not fit the model: `path` names the field, `expected` what should be there.

    `str(error)` reads `billing.firstName: expected string, got number`.
    """

    def __init__(self, expected: str, value: object, path: tuple[str | int, ...] = ()) -> None:
        self.expected = expected
        self.received_type = json_type_name(value)
        self.path = path
        super().__init__(self._message())

    def _message(self) -> str:
        where = self.path_str or "<root>"
        return f"{where}: expected {self.expected}, got {self.received_type}"

    @property
    def path_str(self) -> str:
        """The path as text: `metadata[0].key`."""
        out = ""
        for part in self.path:
            if isinstance(part, int):
                out += f"[{part}]"
            else:
                out += f".{part}" if out else part
        return out

    def within(self, part: str | int) -> FieldError:
        """This error, one level deeper (the caller's field name or list index first)."""
        self.path = (part, *self.path)
        self.args = (self._message(),)
        return self


class MissingFieldError(FieldError, ValueError):
    """A required field is absent (a `ValueError` as well as a `TypeError`)."""

    def __init__(self, path: tuple[str | int, ...] = ()) -> None:
        super().__init__("a value (required field)", None, path)
        self.received_type = "nothing"
        self.args = (self._message(),)
