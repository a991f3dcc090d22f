"""How a run calls its operation for one item, and what it checks before the call.

An item's field names are checked against the operation's signature first (once per distinct
set of names), so a field the operation does not take, or a required one the item lacks, fails
that item with a message naming the field and the operation, and nothing is sent.

The operation is called with `retry_unsafe=False` unless the run resends unknown items: the
client then never repeats a POST that may have taken effect, since a server that ignores
`Idempotency-Key` would create the record twice; the engine resolves such items itself (lookup,
or `UNKNOWN`). So an operation must take `retry_unsafe` (every generated method does; a wrapper
declares it, or takes `**kwargs`, and passes it on to the client): one that cannot is refused
when the run is made, never run with the client's looser retries.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

__all__ = ["ItemCall"]

_T = TypeVar("_T")

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
# What `params.get` answers for a name the operation does not have (a kind no keyword fills).
_ABSENT = inspect.Parameter("absent", inspect.Parameter.VAR_POSITIONAL)
# Distinct field-name sets remembered (JSON Lines rows may each leave out other optional fields).
_CHECKED_CAP = 1024


class ItemCall(Generic[_T]):
    """The run's operation, called with an item's fields, its idempotency key and, where the
    operation takes it, `retry_unsafe=False`; `refusal(item)` says first why it cannot be."""

    def __init__(
        self, operation: Callable[..., Awaitable[_T]], name: str, *, resend_unknown: bool
    ) -> None:
        self.operation = operation
        self.name = name
        try:
            signature: inspect.Signature | None = inspect.signature(operation)
        except (TypeError, ValueError):  # a callable Python cannot describe: called as it is
            signature = None
        self._params = dict(signature.parameters) if signature is not None else None
        params = self._params
        takes_flag = params is not None and (
            params.get("retry_unsafe", _ABSENT).kind in _NAMED
            or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        )
        if params is not None and not takes_flag and not resend_unknown:
            raise TypeError(
                f"the bulk operation {name} must take retry_unsafe= (generated methods do; a "
                f"wrapper passes it on to the client's method): the run calls it with "
                f"retry_unsafe=False, so that the client never repeats a POST that may have "
                f"taken effect, which a server ignoring Idempotency-Key would create twice. "
                f"With resend_unknown=True it is not needed"
            )
        self._safe_retries_only = takes_flag and not resend_unknown
        self._engine_fields = (
            ("idempotency_key", "retry_unsafe") if self._safe_retries_only else ("idempotency_key",)
        )
        self._checked: dict[tuple[object, ...], str | None] = {}

    def __call__(self, item: Mapping[str, Any], idempotency_key: str) -> Awaitable[_T]:
        if self._safe_retries_only:
            return self.operation(**item, idempotency_key=idempotency_key, retry_unsafe=False)
        return self.operation(**item, idempotency_key=idempotency_key)

    def refusal(self, item: Mapping[str, Any]) -> str | None:
        """Why `item`'s fields cannot be passed to the operation, or None when they can."""
        names = tuple(item)
        try:
            return self._checked[names]
        except KeyError:
            pass
        problem = self._problem(names)
        if len(self._checked) >= _CHECKED_CAP:
            self._checked.clear()
        self._checked[names] = problem
        return problem

    def _problem(self, names: tuple[object, ...]) -> str | None:
        where = f"{self.name}():"
        odd = [name for name in names if not isinstance(name, str)]
        if odd:
            return f"{where} field names must be str, got {_listed(odd)}"
        taken = [name for name in names if name in self._engine_fields]
        if taken:
            return (
                f"{where} an item cannot hold {_listed(taken)}: the bulk run passes "
                f"{'it' if len(taken) == 1 else 'them'} itself"
            )
        params = self._params
        if params is None:
            return None
        given = cast("tuple[str, ...]", names) + self._engine_fields
        problems: list[str] = []
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            unexpected = [n for n in given if params.get(n, _ABSENT).kind not in _NAMED]
            if unexpected:
                problems.append(_unexpected(unexpected))
        missing = [p for p in params.values() if p.default is p.empty and _required(p, given)]
        if missing:
            problems.append(_missing(missing))
        return f"{where} {'; '.join(problems)}" if problems else None


def _required(param: inspect.Parameter, given: tuple[str, ...]) -> bool:
    """A parameter without a default that the call leaves unfilled (keywords fill named ones)."""
    if param.kind in _NAMED:
        return param.name not in given
    return param.kind is inspect.Parameter.POSITIONAL_ONLY


def _unexpected(names: Sequence[str]) -> str:
    """Python's own words for fields the operation does not take."""
    if len(names) == 1:
        text = f"got an unexpected keyword argument {names[0]!r}"
    else:
        text = f"got unexpected keyword arguments {_listed(names)}"
    if "idempotency_key" in names:
        text += " (a bulk operation must take idempotency_key=)"
    return text


def _missing(params: Sequence[inspect.Parameter]) -> str:
    """Python's own words for required parameters the item leaves out."""
    count = len(params)
    kind = (
        "keyword-only "
        if all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
        else "positional "
        if all(p.kind is not inspect.Parameter.KEYWORD_ONLY for p in params)
        else ""
    )
    noun = "argument" if count == 1 else "arguments"
    return f"missing {count} required {kind}{noun}: {_listed([p.name for p in params])}"


def _listed(names: Sequence[object]) -> str:
    """`'a'`, `'a' and 'b'`, `'a', 'b', and 'c'` (as Python words it)."""
    quoted = [repr(name) for name in names]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]
