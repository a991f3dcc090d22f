"""`import finalpos_sync` stays cheap: models, the cattrs converter, the pagination layer, the
bulk runner and anyio (which runs the loop) load on first use, and no thread starts until the
first call."""

from __future__ import annotations

import json
import subprocess
import sys

# Heavy parts that a bare `import finalpos_sync` must not load (mirrors the async list in
# tests/client/test_hot_path_shortcuts.py, plus the sync side's own).
_LAZY_MODULES = (
    "cattrs",
    "anyio",
    "anyio.from_thread",
    "finalpos_async._converter",
    "finalpos_async._pagination",
    "finalpos_async.types.customers",
    "finalpos_async.resources.customers",
    "finalpos_async.bulk",
    "finalpos_sync._pagination",
    "finalpos_sync._bulk",
    "finalpos_sync.resources.customers",
)


def _run(code: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_import_loads_no_models_converter_or_portal_and_starts_no_thread() -> None:
    result = _run(
        "import json, sys, threading\n"
        "import finalpos_sync\n"
        f"names = {list(_LAZY_MODULES)!r}\n"
        "print(json.dumps({'loaded': [m for m in names if m in sys.modules],\n"
        "                  'threads': threading.active_count()}))\n"
    )
    assert result == {"loaded": [], "threads": 1}


def test_lazy_names_resolve_to_the_async_objects_on_first_use() -> None:
    result = _run(
        "import json, sys\n"
        "import finalpos_sync, finalpos_async\n"
        "from finalpos_sync import Customer, FinalPOS, NotFoundError, Page, SyncPaginator\n"
        "from finalpos_sync.types import Address\n"
        "import finalpos_async.types.customers as tc\n"
        "try:\n"
        "    finalpos_sync.NoSuchName\n"
        "    missing = None\n"
        "except AttributeError as exc:\n"
        "    missing = str(exc)\n"
        "print(json.dumps({\n"
        "  'customer': Customer is tc.Customer, 'address': Address is tc.Address,\n"
        "  'error': NotFoundError is finalpos_async.NotFoundError,\n"
        "  'client': FinalPOS.__module__, 'page': Page is finalpos_async.Page,\n"
        "  'paginator': SyncPaginator.__module__,\n"
        "  'all_resolve': all(hasattr(finalpos_sync, n) for n in finalpos_sync.__all__),\n"
        "  'in_dir': 'Customer' in dir(finalpos_sync), 'missing': missing,\n"
        "}))\n"
    )
    assert result == {
        "customer": True,
        "address": True,
        "error": True,
        "client": "finalpos_sync._client",
        "page": True,
        "paginator": "finalpos_sync._pagination",
        "all_resolve": True,
        "in_dir": True,
        "missing": "module 'finalpos_sync' has no attribute 'NoSuchName'",
    }


def test_types_module_is_lazy_too() -> None:
    result = _run(
        "import json, sys\n"
        "import finalpos_sync.types as t\n"
        "before = 'finalpos_async.types.customers' in sys.modules\n"
        "t.Customer\n"
        "print(json.dumps({'before': before,\n"
        "                  'after': 'finalpos_async.types.customers' in sys.modules,\n"
        "                  'all_resolve': all(hasattr(t, n) for n in t.__all__)}))\n"
    )
    assert result == {"before": False, "after": True, "all_resolve": True}


def test_iteration_lets_go_of_a_page_before_fetching_the_next() -> None:
    # Here rather than in test_sync_client.py: it needs only a sandbox and a client.
    import weakref
    from collections.abc import Coroutine
    from typing import Any

    from finalpos_async.sandbox import Sandbox
    from finalpos_sync import FinalPOS

    with (
        Sandbox().run_in_thread() as sb,
        FinalPOS(api_key=sb.api_key, base_url=sb.url) as client,
    ):
        for i in range(5):
            client.customers.create(email=f"c{i}@example.com", first_name="F", last_name="L")
        paginator = client.customers.list(limit=2)
        fetch = paginator._paginator.fetch_page
        seen: list[weakref.ref[object]] = []
        alive_during_fetch: list[bool] = []

        def watched_fetch(skip: int) -> Coroutine[Any, Any, Any]:
            # Called in this thread just before each page request is sent to the loop.
            alive_during_fetch.append(any(ref() is not None for ref in seen))
            return fetch(skip)

        paginator._paginator.fetch_page = watched_fetch  # type: ignore[method-assign]
        for customer in paginator:
            seen.append(weakref.ref(customer))
            del customer
    assert len(seen) == 5
    assert alive_during_fetch == [False, False, False]
