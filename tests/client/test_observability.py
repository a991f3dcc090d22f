"""OpenTelemetry's aiohttp client instrumentation sees one CLIENT span per HTTP attempt.

The README promises it; this keeps it true through any change of the transport: a retried call
gives one span per attempt, each with its own status, and a successful one a single span.
The instrumentation hooks aiohttp's client session, so this keeps a real server on 127.0.0.1
(`scripted_server`): the default aiohttp transport is what is under test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import ScriptedServer, ok, status
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        instrumentor.uninstrument()


def status_of(span: object) -> object:
    attributes = getattr(span, "attributes", None) or {}
    return attributes.get("http.response.status_code", attributes.get("http.status_code"))


async def test_each_attempt_is_one_client_span_with_its_status(
    scripted_server: ScriptedServer, spans: InMemorySpanExporter
) -> None:
    scripted_server.play(status(503), status(503), ok({"id": "c1"}))
    async with scripted_server.client() as client:
        assert await client.request("GET", "/v1/api/customer/c1") == {"id": "c1"}
        scripted_server.play(ok({"id": "c2"}))
        await client.request("POST", "/v1/api/customer", json={"email": "a@b.c"})
    finished = spans.get_finished_spans()
    assert [span.kind for span in finished] == [SpanKind.CLIENT] * 4
    assert [status_of(span) for span in finished] == [503, 503, 200, 200]
    methods = [
        (span.attributes or {}).get(
            "http.request.method", (span.attributes or {}).get("http.method")
        )
        for span in finished
    ]
    assert methods == ["GET", "GET", "GET", "POST"]


async def test_the_api_key_is_not_in_any_span(
    scripted_server: ScriptedServer, spans: InMemorySpanExporter
) -> None:
    scripted_server.play(ok())
    async with scripted_server.client(api_key="sk_secret_observability") as client:
        await client.request("GET", "/v1/api/customers")
    text = repr([dict(span.attributes or {}) for span in spans.get_finished_spans()])
    assert "sk_secret_observability" not in text
