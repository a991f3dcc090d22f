"""Mistakes a user could make with the SDK, each of which a type checker must catch.

`tests/e2e/test_typing.py` runs `mypy --strict` and `pyright` (strict) on this file and checks that
each reports exactly the lines tagged `# expect-error`, and nothing else. Each mistake sits on
one line, so every message it causes lands on its tagged line. Never run: it would fail.
"""

from finalpos_async import AsyncFinalPOS, CallNext, Request, TransportResponse, raw_twin
from finalpos_sync import FinalPOS
from finalpos_sync import raw_twin as sync_raw_twin


async def async_mistakes(client: AsyncFinalPOS) -> None:
    # A wrong keyword argument name (the parameter is `first_name`).
    await client.customers.create(email="a@b.c", firstname="Ada", last_name="L")  # expect-error
    # A wrong argument type: ids are `str`.
    await client.customers.retrieve(42)  # expect-error
    # A nested model given as something that is neither the model nor a mapping.
    await client.customers.update("c_1", billing=42)  # expect-error
    # A missing `await`: the coroutine has no `email`.
    pending = client.customers.retrieve("c_1")
    print(pending.email)  # expect-error
    # A missing `await` on a page: the paginator itself has no length.
    print(len(client.customers.list(limit=10)))  # expect-error
    # A plain `for` over an async paginator.
    for _ in client.customers.list():  # expect-error
        pass
    # A resource the client does not have (it is `customers`).
    await client.customer.list()  # expect-error
    # A field the model does not have (it is `first_name`).
    created = await client.customers.create(email="a@b.c", first_name="A", last_name="L")
    print(created.firstName)  # expect-error
    # `retry_unsafe` is a bool (or None), not a word.
    await client.customers.delete("c_1", retry_unsafe="yes")  # expect-error
    # A raw twin keeps the method's parameters...
    await raw_twin(client.customers.retrieve)(id=42)  # expect-error
    # ...and answers a RawResponse, whose model is behind `.parse()`.
    print((await raw_twin(client.customers.retrieve)("c_1")).email)  # expect-error


def plain_middleware(request: Request, call_next: CallNext) -> TransportResponse:
    return TransportResponse(200)


async def header_middleware(request: Request, call_next: CallNext) -> TransportResponse:
    return await call_next(request)


def middleware_mistakes() -> None:
    # A middleware is async: a plain `def` cannot await `call_next`.
    AsyncFinalPOS("sk", middleware=[plain_middleware])  # expect-error
    # A list of middleware, even of one.
    FinalPOS("sk", middleware=header_middleware)  # expect-error


def sync_mistakes(client: FinalPOS) -> None:
    # A wrong keyword argument name on the sync facade (it is `limit`).
    client.customers.list(limt=10)  # expect-error
    # A wrong argument type on the sync facade.
    client.customers.delete(["c_1", "c_2"])  # expect-error
    # None for a create field: the spec allows null (which clears a field) only in updates.
    client.customers.create(email="a", first_name="A", last_name="L", phone=None)  # expect-error
    # The sync raw twin of a list method answers the first page's RawResponse, not a paginator.
    sync_raw_twin(client.customers.list)(limit=5).pages()  # expect-error
