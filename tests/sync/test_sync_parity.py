"""Every public async method has a sync twin with the same signature (async -> sync types only),
and the generated sync files are what the generator writes today."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import finalpos_async
import finalpos_sync
from finalpos_async import AsyncFinalPOS, resources
from finalpos_async.bulk import BulkJob, BulkRunner
from finalpos_sync import FinalPOS
from finalpos_sync.bulk import SyncBulkJob, SyncBulkRunner

ROOT = Path(__file__).resolve().parents[2]
# Public members the sync side adds by hand (lifecycle and the way back to async code).
SYNC_ONLY = {"async_client", "async_resource", "close", "is_closed"}
# Async members with no sync twin, each for a stated reason.
ASYNC_ONLY: set[tuple[str, str]] = set()
# Constructor parameters the sync client leaves out: an aiohttp session belongs to the loop it
# was made on, and the sync client runs its own private loop.
ASYNC_ONLY_PARAMETERS = {"session"}
# Async classes whose hand-written sync twins do not follow the `Async<Name>` -> `<Name>` rule.
TWIN_NAMES = {"BulkRunner": "SyncBulkRunner", "BulkJob": "SyncBulkJob", "Lister": "SyncLister"}
# Package functions with a sync twin of the same name (taking the sync client's methods).
TWIN_FUNCTIONS = {"raw_twin"}


def _norm(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return ""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return ast.unparse(ast.parse(text, mode="eval"))


def _to_sync(annotation: str) -> str:
    """How an async annotation reads on the sync side: no Awaitable, no Async prefix."""
    text = re.sub(r"\bAsyncPaginator\b", "SyncPaginator", annotation)
    text = re.sub(r"\bAsyncIterator\b", "Iterator", text)
    text = re.sub(r"\bAsync([A-Z]\w*)", r"\1", text)
    for async_name, sync_name in TWIN_NAMES.items():
        text = re.sub(rf"\b{async_name}\b", sync_name, text)
    # Awaitable[T] / Coroutine[Any, Any, T] -> T, at any depth (Callable[..., Awaitable[T]]).
    return ast.unparse(_Unwrap().visit(ast.parse(text, mode="eval")))


class _Unwrap(ast.NodeTransformer):
    """Replace `Awaitable[T]` and `Coroutine[Any, Any, T]` by `T` wherever they appear."""

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        if isinstance(node.value, ast.Name) and node.value.id in ("Awaitable", "Coroutine"):
            inner = node.slice.elts[-1] if isinstance(node.slice, ast.Tuple) else node.slice
            result: ast.AST = self.visit(inner)
            return result
        self.generic_visit(node)
        return node


def _async_classes() -> Iterator[tuple[type, type]]:
    """(async class, its sync twin) for the client and every resource class."""
    yield AsyncFinalPOS, FinalPOS
    yield BulkRunner, SyncBulkRunner
    yield BulkJob, SyncBulkJob
    for info in pkgutil.iter_modules(resources.__path__):
        async_mod = importlib.import_module(f"finalpos_async.resources.{info.name}")
        sync_mod = importlib.import_module(f"finalpos_sync.resources.{info.name}")
        for name, cls in vars(async_mod).items():
            if (
                name.startswith("Async")
                and isinstance(cls, type)
                and cls.__module__ == async_mod.__name__
            ):
                twin = getattr(sync_mod, name.removeprefix("Async"), None)
                assert twin is not None, f"{name} has no sync twin in {sync_mod.__name__}"
                yield cls, twin


def _public_members(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.split(".")[0] in ("finalpos_async", "finalpos_sync"):
            out.update({k: v for k, v in vars(klass).items() if not k.startswith("_")})
    return out


def _function(member: Any) -> Any:
    if isinstance(member, property):
        return member.fget
    return getattr(member, "func", member)  # cached_property


def _assert_same_parameters(
    async_fn: Any, sync_fn: Any, where: str, *, async_only: frozenset[str] = frozenset()
) -> None:
    a = [p for p in inspect.signature(async_fn).parameters.values() if p.name not in async_only]
    s = list(inspect.signature(sync_fn).parameters.values())
    if a and a[0].name == "self":
        a, s = a[1:], s[1:]
    assert [p.name for p in s] == [p.name for p in a], where
    for ap, sp in zip(a, s, strict=True):
        assert sp.kind == ap.kind, f"{where}({ap.name}): kind"
        assert sp.default is ap.default or sp.default == ap.default, f"{where}({ap.name}): default"
        assert _norm(sp.annotation) == _to_sync(_norm(ap.annotation)), f"{where}({ap.name})"


PAIRS = list(_async_classes())


@pytest.mark.parametrize(("async_cls", "sync_cls"), PAIRS, ids=[a.__name__ for a, _ in PAIRS])
def test_every_async_member_has_a_sync_twin_with_the_same_signature(
    async_cls: type, sync_cls: type
) -> None:
    async_members = _public_members(async_cls)
    sync_members = _public_members(sync_cls)
    raw_attributes = "__init__" in vars(async_cls) and not any(
        callable(_function(m)) for m in async_members.values()
    )
    if raw_attributes:
        return  # methods set per instance; checked by the raw-response test below
    expected = {n for n in async_members if (async_cls.__name__, n) not in ASYNC_ONLY}
    extra = set(sync_members) - set(async_members) - SYNC_ONLY
    assert not extra, f"{sync_cls.__name__} has members with no async twin: {extra}"
    for name in sorted(expected):
        where = f"{sync_cls.__name__}.{name}"
        assert name in sync_members, f"{where} is missing"
        a, s = async_members[name], sync_members[name]
        assert isinstance(s, (property, type(a))) or callable(s), where
        afn, sfn = _function(a), _function(s)
        assert not inspect.iscoroutinefunction(sfn), f"{where} must not be async"
        if inspect.iscoroutinefunction(afn) or not isinstance(a, property):
            _assert_same_parameters(afn, sfn, where)
        ret_a = _to_sync(_norm(inspect.signature(afn).return_annotation))
        ret_s = _norm(inspect.signature(sfn).return_annotation)
        if ret_a.startswith("_"):  # a self-type TypeVar: the twin's is bound to the twin
            assert ret_s == ret_a, where
        else:
            assert ret_s == ret_a, f"{where}: returns {ret_s}, async returns {ret_a}"
        assert inspect.getdoc(sfn) is not None, f"{where} has no docstring"


def test_constructor_parameters_are_the_async_clients() -> None:
    _assert_same_parameters(
        AsyncFinalPOS.__init__,
        FinalPOS.__init__,
        "FinalPOS.__init__",
        async_only=frozenset(ASYNC_ONLY_PARAMETERS),
    )
    assert set(inspect.signature(AsyncFinalPOS.__init__).parameters) >= ASYNC_ONLY_PARAMETERS


def test_raw_response_twins_have_every_method_with_the_same_parameters() -> None:
    client = AsyncFinalPOS(api_key="sk_parity", base_url="http://127.0.0.1:9")
    sync_client = FinalPOS(api_key="sk_parity", base_url="http://127.0.0.1:9")
    checked = 0
    for info in pkgutil.iter_modules(resources.__path__):
        async_raw = getattr(client, info.name).with_raw_response
        sync_raw = getattr(sync_client, info.name).with_raw_response
        for name, fn in vars(async_raw).items():
            where = f"{type(sync_raw).__name__}.{name}"
            sync_fn = getattr(sync_raw, name)
            _assert_same_parameters(fn, sync_fn, where)
            ret = _norm(inspect.signature(sync_fn).return_annotation)
            assert ret.startswith("RawResponse["), f"{where} returns {ret}"
            checked += 1
    assert checked >= 52  # one per operation of the spec
    sync_client.close()


def test_package_exports_the_async_names_with_sync_twins() -> None:
    expected = {_to_sync(n) for n in finalpos_async.__all__}
    assert expected <= set(finalpos_sync.__all__)
    for name in finalpos_async.__all__:
        if name in TWIN_FUNCTIONS:
            twin, original = getattr(finalpos_sync, name), getattr(finalpos_async, name)
            assert twin is not original, name
            assert twin.__module__.startswith("finalpos_sync."), name
            # The sync twin is overloaded (a list method's twin answers the first page), so
            # only the parameters' names and kinds are compared.
            shape = [(p.name, p.kind) for p in inspect.signature(original).parameters.values()]
            assert [(p.name, p.kind) for p in inspect.signature(twin).parameters.values()] == shape
        elif _to_sync(name) == name:  # not twinned: must be the very same object
            assert getattr(finalpos_sync, name) is getattr(finalpos_async, name), name


def test_generated_files_are_up_to_date() -> None:
    # One generator writes both packages' typed layers (the sync resources included).
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
