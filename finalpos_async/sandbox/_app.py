"""The aiohttp application: one middleware for the cross-cutting parts, generic handlers per kind.

Request path: route miss (404 in the API's shape) → injected fault (if any; the rate limit is
the key's own) → `x-api-key` check → the operation's generic handler (create / find_one / update /
delete / find_all) on the key's account (`_accounts`), wrapped by the `Idempotency-Key` replay for
writes (skipped when `honour_idempotency` is off) → the request log's line (if one is kept).
Handlers never see per-operation code: everything they need (parameters, body schema, entity
schema, collection) comes from `_routes.Route`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from typing import Any, cast

import attrs
from aiohttp import web

from ..spec import nullable
from . import _json
from ._accounts import Account, Accounts, key_fingerprint
from ._answers import fault_response, json_response, misfit, reset_connection
from ._errors import SandboxHTTPError, error_body
from ._faults import MISFIT, SCRIPT_HEADER, Fault, FaultInjector
from ._filters import FieldsEqual
from ._idempotency import IDEMPOTENCY_HEADER, REPLAYED_HEADER, Idempotency, fingerprint
from ._request_log import RequestLog
from ._routes import Route, RouteParam, RouteTable
from ._storage import Storage
from ._validation import fill_required, validate_body, validate_stored_fields

__all__ = ["API_KEY_HEADER", "SandboxState", "build_app"]

logger = logging.getLogger("finalpos_async.sandbox")

API_KEY_HEADER = "x-api-key"
REQUEST_ID_HEADER = "x-request-id"
# Fields the server owns: a body cannot set them (as the API ignores them).
SERVER_FIELDS = frozenset({"id", "_id", "createdAt", "updatedAt", "companyId"})
# The ids the sandbox makes; one given in upper case names the same record, as an ObjectId would.
_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")
_PAGING = ("skip", "limit")
# The methods whose answer a `misfit` fault changes (a read is answered as it is).
_WRITES = frozenset({"POST", "PUT", "PATCH"})
# aiohttp's parser refuses a request line or header over 8190 bytes with a plain-text 400 that no
# middleware sees; a limit well above any real URL lets such a request reach the handlers, to be
# answered like any other (and any error in the API's JSON shape).
_MAX_REQUEST_LINE = 1024 * 1024
_MAX_PAGE = 2**62
# The status an access log shows for a request whose client disconnected (nginx's convention).
CLIENT_CLOSED = 499
_STATE_KEY: web.AppKey[SandboxState] = web.AppKey("finalpos_sandbox_state")
Payload = Any
Outcome = tuple[int, Payload]


@attrs.define
class SandboxState:
    """Everything a running sandbox shares between requests."""

    routes: RouteTable
    storage: Storage
    faults: FaultInjector
    accounts: Accounts
    max_body_size: int
    # False: `Idempotency-Key` is ignored, to test clients against a server that does not honour it
    honour_idempotency: bool = True
    request_log: RequestLog | None = None
    idempotency: Idempotency = attrs.field(init=False)
    _last_millis: int = 0
    _object_counter: int = attrs.field(factory=lambda: int.from_bytes(os.urandom(3), "big"))
    _request_prefix: str = attrs.field(factory=lambda: secrets.token_hex(4))
    _request_counter: int = 0

    def __attrs_post_init__(self) -> None:
        self.idempotency = Idempotency(self.storage)

    def new_request_id(self) -> str:
        """A unique request id for the `x-request-id` header (cheaper than a random per call)."""
        self._request_counter += 1
        return f"req_{self._request_prefix}{self._request_counter:08x}"

    def new_id(self) -> str:
        """A MongoDB-style ObjectId: 4 bytes of time, 5 random, a 3-byte counter (24 hex)."""
        self._object_counter = (self._object_counter + 1) % 0x1000000
        return (
            int(time.time()).to_bytes(4, "big")
            + os.urandom(5)
            + self._object_counter.to_bytes(3, "big")
        ).hex()

    def now(self) -> str:
        """The current time like the API writes it; strictly increasing so updates show."""
        millis = max(int(time.time() * 1000), self._last_millis + 1)
        self._last_millis = millis
        moment = datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}+00:00"


# --------------------------------------------------------------------------- responses


def _error_response(exc: SandboxHTTPError) -> web.Response:
    return json_response(exc.status, error_body(exc.status, exc.message), exc.headers)


def _account(state: SandboxState, request: web.Request) -> Account:
    """The account of the request's key (checked before any handler runs)."""
    account = state.accounts.get(request.headers.get(API_KEY_HEADER))
    if account is None:  # unreachable past `_serve`, which answers 401 first
        raise SandboxHTTPError(401, "Invalid API key.")
    return account


# --------------------------------------------------------------------------- parameters


def _bad(message: str) -> SandboxHTTPError:
    return SandboxHTTPError(400, f"Validation failed: {message}")


def _short(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:61] + "...")


def _query_value(param: RouteParam, raw: str) -> Any:
    kind = param.schema.get("type")
    if kind in ("number", "integer"):
        try:
            number = float(raw)
        except ValueError:
            number = float("nan")
        if number != number or number in (float("inf"), float("-inf")):
            raise _bad(f"Query parameter `{param.name}` must be a number, got {_short(raw)}.")
        if kind == "integer" and not number.is_integer():
            raise _bad(f"Query parameter `{param.name}` must be an integer, got {_short(raw)}.")
        return number
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise _bad(f"Query parameter `{param.name}` must be true or false, got {_short(raw)}.")
        return raw == "true"
    enum = param.schema.get("enum")
    if enum is not None and raw not in enum:
        allowed = ", ".join(str(v) for v in enum)
        raise _bad(f"Query parameter `{param.name}` must be one of: {allowed}.")
    return raw


def _query(op: Route, query: Mapping[str, str]) -> dict[str, Any]:
    """The declared query parameters, checked; one the operation does not declare is a 400.

    The spec lists every parameter an operation takes: a name it does not list (a typo such as
    `tableid`) would otherwise be ignored and the answer would hold every record. A repeated
    parameter counts by its first value.
    """
    for name in query:
        if not any(param.name == name for param in op.query_params):
            allowed = ", ".join(f"`{param.name}`" for param in op.query_params) or "none"
            raise _bad(
                f"Query parameter {_short(name)} is not one this operation takes "
                f"(it takes: {allowed})."
            )
    values: dict[str, Any] = {}
    for param in op.query_params:
        raw = query.get(param.name)
        if raw is None:
            if param.required:
                raise _bad(f"Query parameter `{param.name}` is required.")
            continue
        values[param.name] = _query_value(param, raw)
    return values


def _record_id(op: Route, match_info: Mapping[str, str]) -> str:
    """The record id of the path, as given: any string the spec's `type: string` allows.

    No page of the API's docs says ids are validated (their own example id
    `o1p2q3r4s5t6u7v8w9x0y1z2` is not hexadecimal), so an id the store does not hold, whatever
    its shape, is a 404, never a 400: a client's `except NotFoundError` must fire here as well.
    """
    value = match_info.get(op.id_param or "id", "")
    return value.lower() if _OBJECT_ID.match(value) else value


# --------------------------------------------------------------------------- records


def _is_object_id_schema(schema: Mapping[str, Any] | None) -> bool:
    if not schema:
        return False
    return "$oid" in (schema.get("properties") or {})


def _system_fields(
    state: SandboxState, account: Account, entity: Mapping[str, Any] | None, record_id: str
) -> dict[str, Any]:
    properties: Mapping[str, Any] = (entity or {}).get("properties") or {}
    now = state.now()
    if not properties:  # an undocumented entity: the fields every documented one has
        return {
            "id": record_id,
            "createdAt": now,
            "updatedAt": now,
            "companyId": account.company_id,
        }

    def shaped(name: str, value: str) -> Any:
        return {"$oid": value} if _is_object_id_schema(properties.get(name)) else value

    fields: dict[str, Any] = {}
    id_name = "_id" if "_id" in properties and "id" not in properties else "id"
    fields[id_name] = shaped(id_name, record_id)
    for name in ("createdAt", "updatedAt"):
        if name in properties:
            fields[name] = now
    if "companyId" in properties:
        fields["companyId"] = shaped("companyId", account.company_id)
    return fields


def _derive(
    state: SandboxState, op: Route, collection: str, record: dict[str, Any], *, creating: bool
) -> None:
    """Fill the fields the spec documents as derived.

    - a property whose description says it sets `fromFinal` (customer/order `externalId`) makes
      `fromFinal` true when present, false otherwise;
    - a property described as generated ("auto-generated", "generated by the server") that the
      create body does not declare (outlet `sequenceNumber`) takes the next value of a
      per-collection counter.
    """
    entity = op.entity_schema
    if not entity:
        return
    properties: Mapping[str, Any] = entity.get("properties") or {}
    if "fromFinal" in properties:
        triggers = [
            name
            for name, sub in properties.items()
            if name != "fromFinal" and "fromFinal" in str(sub.get("description", ""))
        ]
        if triggers:
            record["fromFinal"] = any(bool(record.get(name)) for name in triggers)
    if creating:
        for name, sub in properties.items():
            if (
                "generated" in str(sub.get("description", "")).lower()
                and name not in op.create_fields
            ):
                value = state.storage.next_sequence(f"{collection}.{name}")
                record[name] = str(value) if sub.get("type") == "string" else value


def _cleared(op: Route, body: Mapping[str, Any]) -> frozenset[str]:
    """The fields `body` sets to a null its schema allows: an update clearing them.

    The spec allows null in update bodies only, and in no answer, so a cleared field is removed
    from the record rather than stored as null.
    """
    properties: Mapping[str, Any] = (op.body_schema or {}).get("properties") or {}
    return frozenset(
        key
        for key, value in body.items()
        if value is None and key not in SERVER_FIELDS and nullable(properties.get(key) or {})
    )


def _parse_body(op: Route, raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        if op.body_required:
            raise _bad("A JSON request body is required (send {} to change nothing).")
        body: Any = {}
    else:
        try:
            body = _json.loads(raw)
        except ValueError as exc:
            raise SandboxHTTPError(400, f"Malformed JSON in the request body: {exc}") from None
    if op.body_schema is not None:
        problem = validate_body(body, op.body_schema)
        if problem is not None:
            raise _bad(problem)
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.")
    fields = cast("dict[str, Any]", body)  # a JSON object: string keys
    if op.entity_schema is not None:
        skip = SERVER_FIELDS | _cleared(op, fields)
        problem = validate_stored_fields(fields, op.entity_schema, skip)
        if problem is not None:
            raise _bad(problem)
    return fields


def _not_found(record_id: str) -> SandboxHTTPError:
    return SandboxHTTPError(404, f"Resource with Id {record_id} not found")


def _create(state: SandboxState, op: Route, request: web.Request, raw: bytes) -> Outcome:
    _query(op, request.query)
    body = _parse_body(op, raw)
    account = _account(state, request)
    collection = account.collection(op.collection)
    record_id = state.new_id()
    record = _system_fields(state, account, op.entity_schema, record_id)
    record.update((k, v) for k, v in body.items() if k not in SERVER_FIELDS)
    _derive(state, op, collection, record, creating=True)
    if op.entity_schema is not None:
        fill_required(record, op.entity_schema)
    state.storage.insert(collection, record_id, record)
    return op.success_status, record


def _find_one(state: SandboxState, op: Route, request: web.Request, raw: bytes) -> Outcome:
    record_id = _record_id(op, request.match_info)
    _query(op, request.query)
    record = state.storage.get(_account(state, request).collection(op.collection), record_id)
    if record is None:
        raise _not_found(record_id)
    return op.success_status, record


def _update(state: SandboxState, op: Route, request: web.Request, raw: bytes) -> Outcome:
    record_id = _record_id(op, request.match_info)
    _query(op, request.query)
    body = _parse_body(op, raw)
    collection = _account(state, request).collection(op.collection)
    existing = state.storage.get(collection, record_id)
    if existing is None:
        raise _not_found(record_id)
    record = dict(existing)
    record.update((k, v) for k, v in body.items() if k not in SERVER_FIELDS)
    for key in _cleared(op, body):
        record.pop(key, None)
    if "updatedAt" in record or "createdAt" in record:
        record["updatedAt"] = state.now()
    _derive(state, op, collection, record, creating=False)
    state.storage.replace(collection, record_id, record)
    return op.success_status, record


def _delete(state: SandboxState, op: Route, request: web.Request, raw: bytes) -> Outcome:
    record_id = _record_id(op, request.match_info)
    _query(op, request.query)
    if not state.storage.delete(_account(state, request).collection(op.collection), record_id):
        raise _not_found(record_id)
    return op.success_status, {
        "statusCode": op.success_status,
        "message": f"Resource with Id {record_id} deleted successfully",
    }


def _find_all(state: SandboxState, op: Route, request: web.Request, raw: bytes) -> Outcome:
    query = _query(op, request.query)
    # clamped: SQLite's OFFSET/LIMIT are 64-bit, and no sandbox holds 2**62 records anyway
    skip = min(max(0, int(query.get("skip", 0))), _MAX_PAGE)
    # limit 0 (the docs' own example) or none means "no limit", as MongoDB's limit(0) does;
    # a negative limit counts like its absolute value (MongoDB again)
    limit = min(abs(int(query.get("limit", 0))), _MAX_PAGE) or None
    filters = {k: str(v) for k, v in query.items() if k not in _PAGING}
    collection = _account(state, request).collection(op.collection)
    where = FieldsEqual.of(filters) if filters else None
    records = state.storage.list(collection, skip, limit, where)
    return op.success_status, records


def _unsupported(state: SandboxState, op: Route, request: web.Request, raw: bytes) -> Outcome:
    raise SandboxHTTPError(501, f"The sandbox cannot serve {op.method} {op.path} yet.")


_KINDS: dict[str, Callable[[SandboxState, Route, web.Request, bytes], Outcome]] = {
    "create": _create,
    "find_one": _find_one,
    "update": _update,
    "delete": _delete,
    "find_all": _find_all,
    "unsupported": _unsupported,
}


def _handler(
    state: SandboxState, op: Route
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    run = _KINDS[op.kind]
    has_body = op.method in ("POST", "PUT", "PATCH")

    def outcome(request: web.Request, raw: bytes) -> tuple[int, bytes]:
        try:
            status, payload = run(state, op, request, raw)
        except SandboxHTTPError as exc:
            return exc.status, _json.dumps(error_body(exc.status, exc.message))
        return status, _json.dumps(payload)

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = await request.read() if has_body else b""
        key = request.headers.get(IDEMPOTENCY_HEADER)
        headers: dict[str, str] = {}
        if key is not None and op.method != "GET" and state.honour_idempotency:
            scope = hashlib.sha256(request.headers.get(API_KEY_HEADER, "").encode()).hexdigest()

            async def first() -> tuple[int, bytes]:
                return outcome(request, raw)

            status, body, replayed = await state.idempotency.run(
                scope, key, fingerprint(op.method, request.path_qs, raw), first
            )
            if replayed:
                headers[REPLAYED_HEADER] = "true"
        else:
            status, body = outcome(request, raw)
        return web.Response(
            body=body, status=status, content_type="application/json", headers=headers
        )

    return handle


# --------------------------------------------------------------------------- middleware


def _middleware(state: SandboxState) -> Any:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        arrived = time.time()
        try:
            response = await _dispatch(state, request, handler)
        except ConnectionError:
            # The client went away while its body was read: one line, not aiohttp's traceback
            # of an "error handling request" (a disconnect is the client's doing, not an error).
            _log_disconnect(request, "before its request was read (not processed)")
            _log_request(state, request, arrived, CLIENT_CLOSED)
            return web.Response(status=CLIENT_CLOSED)  # for the access log; nobody reads it
        except asyncio.CancelledError:  # a reset fault: no answer was sent
            _log_request(state, request, arrived, 0)
            raise
        _log_request(state, request, arrived, response.status)
        transport = request.transport
        if transport is None or transport.is_closing():
            _log_disconnect(request, f"before its answer ({response.status}) was sent")
        response.headers[REQUEST_ID_HEADER] = state.new_request_id()
        if logger.isEnabledFor(logging.DEBUG):
            # method, path and status only: headers (and so API keys) never reach the log
            logger.debug("%s %s -> %s", request.method, request.path, response.status)
        return response

    return middleware


def _log_request(state: SandboxState, request: web.Request, arrived: float, status: int) -> None:
    """The request's line in the request log, if the sandbox keeps one (never the key itself)."""
    if state.request_log is None:
        return
    key = request.headers.get(API_KEY_HEADER)
    account = state.accounts.get(key)
    if account is not None:
        fingerprint: str | None = account.fingerprint
    else:  # a refused key is fingerprinted too: a test may count its 401s
        fingerprint = key_fingerprint(key) if key else None
    state.request_log.write(
        at=arrived,
        fingerprint=fingerprint,
        method=request.method,
        path=request.path,
        status=status,
    )


def _log_disconnect(request: web.Request, when: str) -> None:
    """A client disconnect, as one warning line (method and path only: never headers)."""
    logger.warning(
        "sandbox: client %s disconnected %s: %s %s",
        request.remote or "?",
        when,
        request.method,
        request.path,
    )


async def _dispatch(
    state: SandboxState,
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        # NestJS answers an unknown route (or method) with 404 "Cannot GET /path"
        return json_response(404, error_body(404, f"Cannot {request.method} {request.path}"))
    fault: Fault | None = None
    if state.faults.config.enabled or SCRIPT_HEADER in request.headers:
        try:
            key = request.headers.get(API_KEY_HEADER, "")
            tenant = key if key in state.accounts else ""  # keys refused share one bucket
            fault = state.faults.for_request(request.method, request.path, request.headers, tenant)
        except ValueError as exc:
            return json_response(400, error_body(400, str(exc)))
    if fault is None:
        return await _serve(state, request, handler)
    if fault.after:
        # the request takes effect, then its answer is lost: what a retry must not duplicate
        response = await _serve(state, request, handler)
        if fault.kind == MISFIT:
            return misfit(response) if request.method in _WRITES else response
        if fault.kind == "delay":
            await asyncio.sleep(fault.delay)
            return response
    elif fault.kind == "delay":
        await asyncio.sleep(fault.delay)
        return await _serve(state, request, handler)
    if fault.kind == "reset":
        reset_connection(request)
        raise asyncio.CancelledError  # nothing more can be sent on this connection
    return fault_response(fault)


async def _serve(
    state: SandboxState,
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    key = request.headers.get(API_KEY_HEADER)
    if not key:
        return json_response(
            401, error_body(401, "Missing API key: send it in the x-api-key header.")
        )
    if key not in state.accounts:
        return json_response(401, error_body(401, "Invalid API key."))
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return json_response(
            413,
            error_body(
                413, f"Request body is larger than the limit of {state.max_body_size} bytes."
            ),
        )
    except SandboxHTTPError as exc:
        return _error_response(exc)


def build_app(state: SandboxState) -> web.Application:
    """The aiohttp application serving every operation of `state.routes`."""
    app = web.Application(
        middlewares=[_middleware(state)],
        client_max_size=state.max_body_size,
        handler_args={"max_line_size": _MAX_REQUEST_LINE, "max_field_size": _MAX_REQUEST_LINE},
    )
    app[_STATE_KEY] = state
    for op in state.routes.routes:
        # `{id:[^/]+}`: aiohttp's default `{id}` refuses braces, the API's router takes any segment
        path = re.sub(r"\{([^}:]+)\}", r"{\1:[^/]+}", op.path)
        app.router.add_route(op.method, path, _handler(state, op))
    return app
