"""Skip/limit pagination through `MockTransport`: next skip = skip + len(items), stop rules,
and servers that misbehave (no socket: the pages and the queries asked for are what matter)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest
from conftest import ScriptedTransport, ok

from finalpos_async import ResponseValidationError, types
from finalpos_async._pagination import AsyncPaginator, Page


def customers(*ids: int) -> list[dict[str, str]]:
    return [{"id": f"c{i}", "email": f"c{i}@example.com"} for i in ids]


def asked(server: ScriptedTransport) -> list[tuple[int, int]]:
    """(skip, limit) of every request the server saw."""
    out = []
    for seen in server.seen:
        query = dict(parse_qsl(urlsplit(seen.path).query))
        out.append((int(query["skip"]), int(query["limit"])))
    return out


async def test_creating_a_paginator_makes_no_request(scripted: ScriptedTransport) -> None:
    async with scripted.client() as client:
        paginator = client.customers.list(limit=10)
        assert isinstance(paginator, AsyncPaginator)
    assert scripted.attempts == 0


async def test_await_gives_the_first_page_only(scripted: ScriptedTransport) -> None:
    scripted.play(ok(customers(1, 2)))
    async with scripted.client() as client:
        page = await client.customers.list(limit=2, skip=4)
    assert isinstance(page, Page)
    assert [c.id for c in page] == ["c1", "c2"]
    assert isinstance(page[0], types.Customer)
    assert (page.skip, page.limit, len(page)) == (4, 2, 2)
    assert asked(scripted) == [(4, 2)]


async def test_exact_multiple_of_limit_ends_on_the_empty_page(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(ok(customers(1, 2)), ok(customers(3, 4)), ok([]))
    async with scripted.client() as client:
        ids = [c.id async for c in client.customers.list(limit=2)]
    assert ids == ["c1", "c2", "c3", "c4"]
    assert asked(scripted) == [(0, 2), (2, 2), (4, 2)]


async def test_short_page_ends_the_walk_without_another_request(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(ok(customers(1, 2, 3)), ok(customers(4)))
    async with scripted.client() as client:
        ids = [c.id async for c in client.customers.list(limit=3)]
    assert ids == ["c1", "c2", "c3", "c4"]
    assert asked(scripted) == [(0, 3), (3, 3)]


async def test_empty_first_page(scripted: ScriptedTransport) -> None:
    scripted.play(ok([]))
    async with scripted.client() as client:
        assert [c async for c in client.customers.list()] == []
        first = await client.customers.list()
    assert len(first) == 0
    assert first == []
    assert asked(scripted) == [(0, 100), (0, 100)]


async def test_server_ignoring_limit_raises_instead_of_walking(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(ok(customers(1, 2, 3)))
    async with scripted.client() as client:
        with pytest.raises(ResponseValidationError, match="3 items for limit=2"):
            [c async for c in client.customers.list(limit=2)]
    assert scripted.attempts == 1


async def test_server_ignoring_skip_raises_on_the_repeated_page(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(ok(customers(1, 2)))  # the same page for every skip
    seen: list[str | None] = []

    async def walk(paginator: AsyncPaginator[types.Customer]) -> None:
        async for customer in paginator:
            seen.append(customer.id)

    async with scripted.client() as client:
        with pytest.raises(ResponseValidationError, match="same page twice"):
            await walk(client.customers.list(limit=2))
    assert seen == ["c1", "c2"]
    assert asked(scripted) == [(0, 2), (2, 2)]


async def test_max_items_caps_the_walk_and_the_last_request(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(ok(customers(1, 2)), ok(customers(3)))
    async with scripted.client() as client:
        ids = [c.id async for c in client.customers.list(limit=2, max_items=3)]
    assert ids == ["c1", "c2", "c3"]
    assert asked(scripted) == [(0, 2), (2, 1)]


async def test_max_items_zero_makes_no_request(scripted: ScriptedTransport) -> None:
    async with scripted.client() as client:
        assert [c async for c in client.customers.list(max_items=0)] == []
    assert scripted.attempts == 0


async def test_pages_yields_each_page_with_its_skip_and_limit(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(ok(customers(1, 2)), ok(customers(3)))
    async with scripted.client() as client:
        pages = [page async for page in client.customers.list(limit=2).pages()]
    assert [(p.skip, p.limit, [c.id for c in p]) for p in pages] == [
        (0, 2, ["c1", "c2"]),
        (2, 2, ["c3"]),
    ]


async def test_pages_without_a_documented_item_schema_are_dicts(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(ok([{"_id": "t1", "name": "Loyalty"}]))
    async with scripted.client() as client:
        page = await client.custom_tables.list()
    assert page.items == [{"_id": "t1", "name": "Loyalty"}]


async def test_a_page_item_that_does_not_fit_names_its_index(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(ok([{"id": "c1"}, {"id": 2}]))
    async with scripted.client() as client:
        with pytest.raises(ResponseValidationError) as caught:
            await client.customers.list()
    assert caught.value.field_path == "[1].id"


async def test_query_filters_go_with_every_page(scripted: ScriptedTransport) -> None:
    scripted.play(ok([{"id": "f1"}]))
    async with scripted.client() as client:
        await client.custom_tables.list_fields(table_id="t1", limit=5)
    query = dict(parse_qsl(urlsplit(scripted.seen[0].path).query))
    assert query == {"tableId": "t1", "skip": "0", "limit": "5"}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"limit": 0}, ValueError),
        ({"skip": -1}, ValueError),
        ({"limit": "10"}, TypeError),
        ({"max_items": -5}, ValueError),
    ],
)
async def test_bad_paging_arguments_are_refused_up_front(
    scripted: ScriptedTransport, kwargs: dict[str, object], error: type[Exception]
) -> None:
    async with scripted.client() as client:
        with pytest.raises(error):
            client.customers.list(**kwargs)  # type: ignore[arg-type]
    assert scripted.attempts == 0


async def test_the_step_by_step_protocol_of_the_class_docstring(
    scripted: ScriptedTransport,
) -> None:
    scripted.play(ok(customers(1, 2)), ok([]))
    async with scripted.client() as client:
        paginator = client.customers.list(limit=2)
        walk = paginator.walk()
        skips = []
        while walk.next_skip is not None:
            skips.append(walk.next_skip)
            page = await paginator.fetch_page(walk.next_skip)
            walk.advance(page)
    assert skips == [0, 2]


async def test_next_page_is_the_one_step_every_walk_takes(scripted: ScriptedTransport) -> None:
    scripted.play(ok(customers(1, 2)), ok(customers(3)))
    async with scripted.client() as client:
        paginator = client.customers.list(limit=2, skip=4, max_items=10)
        assert (paginator.skip, paginator.limit, paginator.max_items) == (4, 2, 10)
        assert paginator.item is types.Customer
        walk = paginator.walk()
        pages = []
        while (page := await paginator.next_page(walk)) is not None:
            pages.append([c.id for c in page])
        assert await paginator.next_page(walk) is None  # done stays done, with no request
    assert pages == [["c1", "c2"], ["c3"]]
    assert asked(scripted) == [(4, 2), (6, 2)]
