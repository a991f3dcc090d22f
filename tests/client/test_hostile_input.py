"""Bad input from the caller gets a clear error naming the argument, before anything is sent.

- ids with `/`, `..`, `?`, `#`, `%` and any other character are percent-encoded into exactly one
  path segment: the route never changes (checked on the wire against a real server);
- wrong types, NaN/infinity where money (or any number) is expected, naive datetimes;
- CR/LF (header injection) through every string that ends up in a header: `extra_headers`,
  `default_headers`, `idempotency_key`, `api_key`, header names, and `base_url`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote

import attrs
import pytest
from aiohttp import web
from conftest import checked_out
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finalpos_async import AsyncFinalPOS, FinalPOSError
from finalpos_async._urls import encode_path_param


@attrs.define
class Recorder:
    """Records the raw request target of every request; `/v1/api/customer/<one segment>` answers
    a customer whose id is that segment, decoded (anything else answers 418)."""

    url: str = ""
    raw_paths: list[str] = attrs.field(factory=list)
    ids: list[str] = attrs.field(factory=list)
    headers: list[dict[str, str]] = attrs.field(factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        # Routed by hand on the raw target: the route must hold on the wire, whatever a
        # server's own router would make of the decoded path.
        raw = request.raw_path
        self.raw_paths.append(raw)
        self.headers.append(dict(request.headers))
        prefix = "/v1/api/customer/"
        segment = raw[len(prefix) :]
        if raw.startswith(prefix) and segment and not set(segment) & set("/?#"):
            ident = unquote(segment)
            self.ids.append(ident)
            return web.json_response({"id": ident, "email": "a@b.c"})
        return web.json_response({"routed": "elsewhere"}, status=418)


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    """A real server on 127.0.0.1 with one customer route; anything else answers 418."""
    rec = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield rec
    finally:
        await runner.cleanup()


def offline_client(**kwargs: Any) -> AsyncFinalPOS:
    """A client whose requests would fail to connect: every test here must fail before that."""
    settings_: dict[str, Any] = {"api_key": "sk_test_input", "base_url": "http://127.0.0.1:9"}
    settings_.update(kwargs)
    return AsyncFinalPOS(**settings_)


CUSTOMER = {"email": "a@b.c", "first_name": "Ada", "last_name": "Lovelace"}

# ------------------------------------------------------------------------- ids and routes

TRICKY_IDS = [
    "a/b",
    "../../v1/api/outlets",
    "..%2F..%2Fadmin",
    "c1?admin=true",
    "c1#fragment",
    "%2e%2e",
    "...",
    "a b",
    "caf\u00e9",
    "\u202ex",  # right-to-left override
    "c1;jsessionid=1",
    "/",
    "\\..\\",
    "@evil.example",
]


@pytest.mark.parametrize("ident", TRICKY_IDS)
async def test_tricky_ids_stay_one_segment_of_the_same_route(
    recorder: Recorder, ident: str
) -> None:
    async with AsyncFinalPOS(api_key="sk_test_input", base_url=recorder.url) as client:
        customer = await client.customers.retrieve(ident)
    # The customer route answered (not the catch-all), with the id exactly as given.
    assert recorder.ids == [ident]
    assert customer.id == ident
    assert recorder.raw_paths == [f"/v1/api/customer/{quote(ident, safe='')}"]


_id_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40
).filter(lambda s: s not in {".", ".."})


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
    database=None,
)
@given(ident=_id_text)
async def test_any_id_reaches_the_route_unchanged(recorder: Recorder, ident: str) -> None:
    recorder.ids.clear()
    recorder.raw_paths.clear()
    async with AsyncFinalPOS(api_key="sk_test_input", base_url=recorder.url) as client:
        customer = await client.customers.retrieve(ident)
    assert recorder.raw_paths == [f"/v1/api/customer/{quote(ident, safe='')}"]
    assert recorder.ids == [ident]
    assert customer.id == ident


@given(
    value=st.text(st.characters(), min_size=1, max_size=40).filter(lambda s: s not in {".", ".."})
)
@settings(max_examples=300, derandomize=True, database=None)
def test_encode_path_param_leaves_no_delimiter_or_fails_naming_the_parameter(value: str) -> None:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        with pytest.raises(ValueError, match="'order_id'"):
            encode_path_param(value, "order_id")
        return
    encoded = encode_path_param(value, "order_id")
    assert not set(encoded) & set("/?#\\ \r\n")
    assert all(ch.isascii() for ch in encoded)


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        (123, TypeError, "must be a str"),
        (None, TypeError, "must be a str"),
        (b"c1", TypeError, "must be a str"),
        ("", ValueError, "must not be empty"),
        ("..", ValueError, "must not be '..'"),
        (".", ValueError, "must not be '.'"),
        ("c1\r\nHost: evil", ValueError, "control character"),
        ("c1\x00", ValueError, "control character"),
        ("c1\ud800", ValueError, "lone surrogate"),
    ],
)
async def test_bad_ids_are_refused_naming_the_argument(
    value: object, error: type[Exception], words: str
) -> None:
    client = offline_client()
    with pytest.raises(error, match=words) as info:
        await client.customers.retrieve(value)  # type: ignore[arg-type]  # hostile on purpose
    assert "'id'" in str(info.value)
    assert client.state == "new" or checked_out(client) == 0
    await client.close()


# ------------------------------------------------------------------------ money and types


@pytest.mark.parametrize(
    "amount",
    [math.nan, math.inf, -math.inf, Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"),
     Decimal("sNaN"), "nan", "Infinity", "12,50", "1e", 12.5, [], True],
)  # fmt: skip
async def test_bad_money_is_refused_naming_the_field(amount: object) -> None:
    client = offline_client()
    with pytest.raises((TypeError, ValueError)) as info:
        await client.customers.create(**CUSTOMER, total_spent=amount)  # type: ignore[arg-type]  # hostile
    assert "total_spent" in str(info.value)
    await client.close()


@pytest.mark.parametrize(
    "body",
    [
        {"amount": math.nan},
        {"items": [{"price": 1}, {"price": math.inf}]},
        [1.0, -math.inf],
    ],
)
async def test_nan_in_a_raw_json_body_is_refused_not_sent_as_null(body: Any) -> None:
    # orjson writes NaN as `null`: the amount would be lost silently. It must be an error.
    client = offline_client()
    with pytest.raises(ValueError, match=r"json \(the request body\).*NaN or infinite") as info:
        await client.request("POST", "/v1/api/order", json=body)
    assert "$" in str(info.value)  # says where
    await client.close()


async def test_nan_in_extra_body_is_refused() -> None:
    client = offline_client()
    with pytest.raises(ValueError, match=r"\$\.tip"):
        await client.customers.create(**CUSTOMER, extra_body={"tip": math.nan})
    await client.close()


async def test_unencodable_json_names_the_argument() -> None:
    client = offline_client()
    with pytest.raises(TypeError, match=r"json \(the request body\)"):
        await client.request("POST", "/v1/api/order", json={"at": {1, 2}})
    await client.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"email": 5}, "email"),
        ({"first_name": None}, "first_name"),
        ({"tags": "vip"}, "tags"),
        ({"tags": ["vip", 3]}, "tags"),
        ({"billing": {"city": 5}}, "billing.city"),
        ({"billing": "Main St"}, "billing"),
        ({"metadata": [{"key": 1}]}, "metadata"),
    ],
)
async def test_wrong_types_name_the_argument(kwargs: dict[str, Any], field: str) -> None:
    client = offline_client()
    with pytest.raises((TypeError, ValueError)) as info:
        await client.customers.create(**{**CUSTOMER, **kwargs})
    assert field in str(info.value)
    await client.close()


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"deadline": math.inf}, "deadline"),
        ({"deadline": "5"}, "deadline"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
    ],
)
async def test_bad_per_call_options_name_the_option(options: dict[str, Any], name: str) -> None:
    client = offline_client()
    with pytest.raises((TypeError, ValueError), match=name):
        await client.customers.retrieve("c1", **options)
    await client.close()


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"since": datetime(2024, 1, 1)}, "'since' is a naive datetime"),
        ({"min_total": math.nan}, "'min_total' must be a finite number"),
        ({"max_total": math.inf}, "'max_total' must be a finite number"),
        ({"ids": [1, object()]}, "'ids'"),
        ({"raw": b"bytes"}, "'raw'"),
        ({1: "a"}, "params keys must be str"),
        ("a=b", "params must be a mapping"),
        ([("a", "b")], "params must be a mapping"),
    ],
)
async def test_bad_query_values_name_the_parameter(params: Any, words: str) -> None:
    client = offline_client()
    with pytest.raises((TypeError, ValueError), match=words):
        await client.request("GET", "/v1/api/orders", params=params)
    await client.close()


async def test_an_aware_datetime_query_value_is_sent_with_its_offset(recorder: Recorder) -> None:
    async with AsyncFinalPOS(api_key="sk_test_input", base_url=recorder.url) as client:
        with pytest.raises(Exception, match="418"):
            await client.request(
                "GET", "/v1/api/orders", params={"since": datetime(2024, 1, 1, tzinfo=timezone.utc)}
            )
    assert recorder.raw_paths == ["/v1/api/orders?since=2024-01-01T00:00:00%2B00:00"]


async def test_a_naive_datetime_in_a_model_is_refused_naming_the_field() -> None:
    from finalpos_async._converter import unstructure
    from finalpos_async.types.customers import Customer

    naive = Customer(id="c1", email="a@b.c", last_action=datetime(2024, 1, 1))  # type: ignore[call-arg]  # naive on purpose
    with pytest.raises((TypeError, ValueError), match=r"last_action.*timezone-aware"):
        unstructure(naive)


# ----------------------------------------------------------------------- header injection

INJECTIONS = ["v\r\nX-Injected: 1", "v\nX-Injected: 1", "v\rX-Injected: 1", "v\x00", "\x7f"]


@pytest.mark.parametrize("value", INJECTIONS)
async def test_crlf_in_extra_headers_is_refused(value: str) -> None:
    client = offline_client()
    with pytest.raises(ValueError, match=r"extra_headers.*control characters"):
        await client.request("GET", "/v1/api/customers", extra_headers={"X-Trace": value})
    with pytest.raises(ValueError, match=r"extra_headers.*control characters"):
        await client.customers.retrieve("c1", extra_headers={"X-Trace": value})
    await client.close()


@pytest.mark.parametrize("value", INJECTIONS)
async def test_crlf_in_idempotency_key_is_refused(value: str) -> None:
    client = offline_client()
    with pytest.raises(ValueError, match=r"idempotency_key.*control characters"):
        await client.customers.create(**CUSTOMER, idempotency_key=value)
    with pytest.raises(ValueError, match="idempotency_key"):
        await client.request("POST", "/v1/api/customer", json={}, idempotency_key=value)
    await client.close()


@pytest.mark.parametrize(("value", "error"), [(42, TypeError), ("", ValueError), (" ", ValueError)])
async def test_idempotency_key_of_the_wrong_type_or_empty_is_refused(
    value: object, error: type[Exception]
) -> None:
    client = offline_client()
    with pytest.raises(error, match="idempotency_key"):
        await client.request("POST", "/v1/api/customer", json={}, idempotency_key=value)  # type: ignore[arg-type]  # hostile
    await client.close()


@pytest.mark.parametrize(
    "name", ["X-A: b", "X A", "X-A\r\nX-B", "", "X-A:", "Caf\u00e9", "(x)", "a\tb"]
)
async def test_invalid_header_names_are_refused(name: str) -> None:
    client = offline_client()
    with pytest.raises(ValueError, match="extra_headers has an invalid header name"):
        await client.request("GET", "/v1/api/customers", extra_headers={name: "v"})
    with pytest.raises(ValueError, match="default_headers has an invalid header name"):
        offline_client(default_headers={name: "v"})
    await client.close()


@pytest.mark.parametrize("value", INJECTIONS)
def test_crlf_in_default_headers_and_with_options_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"default_headers.*control characters"):
        offline_client(default_headers={"X-Tenant": value})
    client = offline_client()
    with pytest.raises(ValueError, match=r"default_headers.*control characters"):
        client.with_options(default_headers={"X-Tenant": value})


SECRET = "sk_live_very_secret"


@pytest.mark.parametrize("suffix", ["\r\nX-Injected: 1", "\n", "\x00"])
def test_crlf_in_api_key_is_refused_without_echoing_the_key(
    suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for make in (
        lambda: offline_client(api_key=SECRET + suffix),
        lambda: offline_client().with_options(api_key=SECRET + suffix),
        lambda: AsyncFinalPOS(sandbox=True, api_key=SECRET + suffix),
    ):
        # A trailing line break is a copy-paste artefact and is named as such.
        expected = "around it" if suffix == "\n" else "api_key contains control characters"
        with pytest.raises(ValueError, match=expected) as info:
            make()
        assert SECRET not in str(info.value)
    if "\x00" in suffix:
        return  # the OS cannot put a NUL into an environment variable
    monkeypatch.setenv("FINALPOS_API_KEY", SECRET + suffix)
    with pytest.raises(ValueError, match="api_key") as info:
        AsyncFinalPOS(base_url="http://127.0.0.1:9")
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/v1\r\nX-Injected: 1",
        "http://127.0.0.1\r\n:9",
        "http://127.0.0.1:9/a b",
        "https://api.final\tpos.com",
    ],
)
def test_control_characters_in_base_url_are_refused(url: str) -> None:
    # urlsplit silently drops CR/LF/tab, so without an explicit check they would pass through.
    with pytest.raises(ValueError, match="base_url"):
        offline_client(base_url=url)


async def test_a_header_that_passes_arrives_exactly_as_given(recorder: Recorder) -> None:
    async with AsyncFinalPOS(api_key="sk_test_input", base_url=recorder.url) as client:
        await client.customers.retrieve("c1", extra_headers={"X-Trace": "a: b; c=d"})
    assert recorder.headers[-1]["X-Trace"] == "a: b; c=d"
    assert "X-Injected" not in recorder.headers[-1]


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("v1/api/customers", "starting with '/'"),
        ("https://evil.example/v1", "starting with '/'"),
        ("/v1/api/customers\r\nX-Injected: 1", "control characters"),
        (b"/v1", "must be a str"),
    ],
)
async def test_bad_raw_paths_are_refused(path: Any, words: str) -> None:
    client = offline_client()
    with pytest.raises((TypeError, ValueError), match=words):
        await client.request("GET", path)
    await client.close()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"extra_headers": {"X-Trace": "a\ud800"}}, "extra_headers.*lone surrogate"),
        ({"idempotency_key": "k\udc00"}, "idempotency_key.*lone surrogate"),
        ({"params": {"q": "a\ud800"}}, "'q' holds a lone surrogate"),
        ({"params": {"q\ud800": "a"}}, "holds a lone surrogate"),
    ],
)
async def test_lone_surrogates_are_refused_not_silently_dropped(
    recorder: Recorder, kwargs: dict[str, Any], words: str
) -> None:
    # aiohttp/yarl drop a lone surrogate on the way out: "k\ud800" and "k\udc00" would both be
    # sent as "k" (two idempotency keys becoming one). It must be an error naming the argument.
    async with AsyncFinalPOS(api_key="sk_test_input", base_url=recorder.url) as client:
        with pytest.raises(ValueError, match=words):
            await client.request("POST", "/v1/api/customer", json={}, **kwargs)
        with pytest.raises(ValueError, match="path"):
            await client.request("GET", "/v1/api/customer/a\ud800")
    assert recorder.raw_paths == []


# ------------------------------------------------- every generated method, fuzzed arguments


def _resource_methods() -> list[tuple[str, str]]:
    """(resource attribute, method name) for every public operation of the generated client."""
    import inspect

    from finalpos_async._resource import AsyncAPIResource

    client = offline_client()
    found = []
    for attr in sorted(dir(client)):
        if attr.startswith("_") or attr in {"bulk", "with_raw_response"}:
            continue
        try:
            resource = getattr(client, attr)
        except Exception:  # pragma: no cover - a property that needs a running loop
            continue
        if not isinstance(resource, AsyncAPIResource):
            continue
        for name, _member in inspect.getmembers(type(resource), inspect.isfunction):
            if not name.startswith("_"):
                found.append((attr, name))
    return found


RESOURCE_METHODS = _resource_methods()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_hostile_values = st.one_of(
    st.none(),
    st.sampled_from([math.nan, math.inf, -math.inf, Decimal("NaN"), Decimal("sNaN"),
                     datetime(2024, 1, 1), b"bytes", object(), {1, 2}, [object()], True,
                     "x\r\nX-Injected: 1", "../..", "", "a/b?c#d", -1, 2**70, 0.5]),
    st.text(max_size=10),
    st.integers(-5, 5),
    st.dictionaries(st.text(max_size=5), st.sampled_from([1, "a", math.nan, None]), max_size=2),
    st.lists(st.sampled_from([1, "a", math.nan, None, {}]), max_size=3),
)  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(data=st.data())
async def test_every_operation_refuses_bad_arguments_naming_one(data: st.DataObject) -> None:
    import inspect

    attr, name = data.draw(st.sampled_from(RESOURCE_METHODS), label="operation")
    client = offline_client(max_retries=0, connect_timeout=1.0)
    method = getattr(getattr(client, attr), name)
    params = [
        p for p in inspect.signature(method).parameters.values() if p.kind is not p.VAR_KEYWORD
    ]
    kwargs: dict[str, Any] = {}
    for param in params:
        # Always pass required ones; optional ones half of the time.
        if param.default is inspect.Parameter.empty or data.draw(st.booleans()):
            kwargs[param.name] = data.draw(_hostile_values, label=param.name)
    problem = ""
    try:
        result = method(**kwargs)
        if inspect.isawaitable(result):
            await result
    except FinalPOSError:
        pass  # the arguments passed every check; only the (absent) server failed the call
    except (TypeError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    finally:
        await client.close()
    if problem:
        # A query parameter may be named by its wire (camelCase) name: table_id -> tableId.
        names = [*kwargs, *(_camel(n) for n in kwargs), "json", "path parameter", "params"]
        named = [n for n in names if n in problem]
        assert named, f"{attr}.{name}: names no argument: {problem}"
