"""The resource classes of both flavours, from the same `SpecOperation`s and the same signatures.

- `finalpos_async/resources/<resource>.py`: `Async<Resource>`, whose methods build the request and
  await the client's request function, and its `Async<Resource>WithRawResponse` twin;
- `finalpos_sync/resources/<resource>.py`: `<Resource>`, with the same signatures and docstrings
  (editors show them on hover) and one-line bodies handing the async method's coroutine to the
  private loop, and its `<Resource>WithRawResponse` twin;
- both `resources/__init__.py`: the mixins that put the resources on the clients.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .spec import Model, SpecOperation
from .text import HEADER, args_section, clean, docstring, indented, pascal, snake, std_imports

OPTION_PARAMS = [
    "timeout: NotGivenOr[float | None] = NOT_GIVEN",
    "deadline: NotGivenOr[float | None] = NOT_GIVEN",
    "max_retries: NotGivenOr[int] = NOT_GIVEN",
    "extra_headers: Mapping[str, str] | None = None",
    "idempotency_key: str | None = None",
    "retry_unsafe: bool | None = None",
]
OPTION_ARGS = "timeout, deadline, max_retries, extra_headers, idempotency_key, retry_unsafe"
OPTION_DOC = "Per-call options; see `RequestOptions`."
LIST_NOTE = {
    "async": "`await` the result for the first page, `async for` over it for every record,",
    "sync": "call `.first_page()` for the first page, `for` over it for every record,",
}


def python_path(op: SpecOperation) -> str:
    """The request path as an f-string with every path parameter encoded."""
    path = op.path
    for param in op.path_params:
        name = snake(param["name"])
        path = path.replace(
            "{" + param["name"] + "}", "{encode_path_param(" + name + ', "' + name + '")}'
        )
    return f'f"{path}"' if op.path_params else f'"{path}"'


def query_type(param: dict[str, Any]) -> str:
    return {"number": "float", "integer": "int", "boolean": "bool"}.get(
        param.get("schema", {}).get("type", "string"), "str"
    )


def parameters(
    op: SpecOperation, models: dict[str, Model]
) -> tuple[list[str], list[tuple[str, str]]]:
    """The method's parameters (source text, after `self`) and their `Args:` entries."""
    sig: list[str] = []
    docs: list[tuple[str, str]] = []
    for param in op.path_params:
        sig.append(f"{snake(param['name'])}: str")
        docs.append((snake(param["name"]), param.get("description", "")))
    sig.append("*")
    for param in sorted(op.query_params, key=lambda p: not p.get("required")):
        name, typ = snake(param["name"]), query_type(param)
        sig.append(f"{name}: {typ}" if param.get("required") else f"{name}: {typ} | None = None")
        docs.append((name, param.get("description", "")))
    fields = models[op.body].fields if op.body else []
    for field in sorted(fields, key=lambda f: not f.required):
        # `None` (sent as null) only where the spec allows null: update bodies clear a field.
        typ = f"{field.param_type} | None" if field.nullable else field.param_type
        if field.required:
            sig.append(f"{field.name}: {typ}")
        else:
            sig.append(f"{field.name}: NotGivenOr[{typ}] = NOT_GIVEN")
        docs.append((field.name, field.description))
    if op.body:
        sig.append("extra_body: Mapping[str, Any] | None = None")
        docs.append(("extra_body", "Fields to send that the spec does not list (custom fields)."))
    if op.paginated:
        sig += ["limit: int = DEFAULT_PAGE_LIMIT", "skip: int = 0", "max_items: int | None = None"]
        docs += [
            ("limit", "Records per page (the API's `limit`)."),
            ("skip", "Records to skip before the first page."),
            ("max_items", "Stop after this many records in total."),
        ]
    docs.append((OPTION_ARGS, OPTION_DOC))
    return sig + OPTION_PARAMS, docs


def method_head(op: SpecOperation, models: dict[str, Model], flavour: str) -> list[str]:
    """`def name(self, ...) -> Result:` and the docstring, for the async or the sync flavour."""
    sig, docs = parameters(op, models)
    paginator = "AsyncPaginator" if flavour == "async" else "SyncPaginator"
    result = f"{paginator}[{op.result}]" if op.paginated else op.result
    summary = clean(op.op.get("summary", op.op_id))
    description = clean(op.op.get("description", ""))
    text = summary if summary.endswith(".") else summary + "."
    if description:
        text += "\n\n" + description
    text += f"\n\n`{op.http} {op.path}`"
    if op.paginated:
        text += (
            f"\n\nNo request is made here: {LIST_NOTE[flavour]} or call `.pages()` to go page "
            "by page."
        )
    text += "\n\n" + args_section(docs, 8)
    define = "async def" if flavour == "async" and not op.paginated else "def"
    params = "".join(f"        {p},\n" for p in sig)
    return [
        f"    {define} {op.method}(\n        self,\n{params}    ) -> {result}:",
        indented(docstring(text, 8), 8),
    ]


def async_call(op: SpecOperation, models: dict[str, Model]) -> list[str]:
    """The async method's body: build the body and query, send, parse (or paginate)."""
    body_model = models[op.body] if op.body else None
    query = [(p["name"], snake(p["name"])) for p in op.query_params]
    out: list[str] = []
    options = f"options=request_options({OPTION_ARGS}),"
    checked = ", ".join(f'"{wire}": check_query_param({name}, "{name}")' for wire, name in query)
    params = "{" + checked + "}"
    if body_model:
        values = ", ".join(f'"{f.name}": {f.name}' for f in body_model.fields)
        out.append(f"body = unstructure_params({body_model.name}, {{{values}}}, extra_body)")
    cast = "dict" if op.result.startswith("dict") else op.result
    if op.paginated:
        out += [f"return self._paginate({python_path(op)}, {cast}, params={params},"]
        out += [f"    skip=skip, limit=limit, max_items=max_items, {options}", ")"]
        return ["        " + line for line in out]
    # The client's request function directly, then `_parse`: one coroutine layer per call.
    out += ["raw = await self._send(", f'    "{op.http}",', f"    {python_path(op)},"]
    if query:
        out.append(f"    params={params},")
    if body_model:
        out.append("    json=body,")
    out += [f"    {options}", ")", f"return self._parse(raw, {cast})"]
    return ["        " + line for line in out]


def sync_call(op: SpecOperation) -> list[str]:
    """The sync method's body: the async method with the same arguments, on the private loop."""
    call = f"self._async().{op.method}(**arguments(locals()))"
    wrap = "self._paginate" if op.paginated else "self._run"
    return [f"        return {wrap}({call})"]


def resource_doc(resource: str, ops: list[SpecOperation], tags: dict[str, str]) -> str:
    tag_docs: list[str] = []
    for op in ops:
        for tag in op.op.get("tags", []):
            if tags.get(tag) and clean(tags[tag]) not in tag_docs:
                tag_docs.append(clean(tags[tag]))
    return f"`client.{resource}`: " + " ".join(tag_docs)


def render_classes(
    resource: str, ops: list[SpecOperation], models: dict[str, Model], doc: str, flavour: str
) -> str:
    """The resource class and its raw-response twin."""
    prefix = "Async" if flavour == "async" else ""
    cls = f"{prefix}{pascal(resource)}"
    base = "AsyncAPIResource" if flavour == "async" else f"SyncResource[Async{pascal(resource)}]"
    methods = []
    for op in ops:
        body = async_call(op, models) if flavour == "async" else sync_call(op)
        methods.append("\n".join(method_head(op, models, flavour) + body))
    raw_doc = f"`{cls}` methods that return `RawResponse[Model]`; `.parse()` gives the model."
    raw_attrs = "\n".join(
        f"        self.{op.method} = to_raw_{'page' if op.paginated else 'response'}"
        f"(resource.{op.method})"
        for op in ops
    )
    body_src = "\n\n".join(methods)
    return f'''class {cls}({base}):
{indented(docstring(doc, 4), 4)}

    @cached_property
    def with_raw_response(self) -> {cls}WithRawResponse:
        """The same methods, returning the `RawResponse` (status, headers, timing, `.parse()`)."""
        return {cls}WithRawResponse(self._raw_twin())

{body_src}


class {cls}WithRawResponse:
{indented(docstring(raw_doc, 4), 4)}

    def __init__(self, resource: {cls}) -> None:
{raw_attrs}
'''


def model_imports(
    ops: list[SpecOperation], models: dict[str, Model], package: str, *, bodies: bool = True
) -> list[str]:
    """`from <package>.<module> import ...` for every model the methods name (with `bodies`,
    also the body models the async methods build)."""
    used = {n for op in ops for n in op.refs() if bodies or n != op.body}
    used |= {ref for op in ops if op.body for f in models[op.body].fields for ref in f.refs}
    by_module: dict[str, list[str]] = defaultdict(list)
    for name in sorted(used):
        by_module[models[name].module].append(name)
    return [f"from {package}.{m} import {', '.join(n)}" for m, n in sorted(by_module.items())]


def render_async_module(
    resource: str, ops: list[SpecOperation], models: dict[str, Model], tags: dict[str, str]
) -> str:
    cls = f"Async{pascal(resource)}"
    body = render_classes(resource, ops, models, resource_doc(resource, ops, tags), "async")
    head = [HEADER + f'"""`{cls}`: the `client.{resource}` operations."""', ""]
    head += ["from __future__ import annotations", "", *std_imports(body), ""]
    # Order does not matter here: `ruff_format` sorts the imports.
    core = ["AsyncAPIResource", "request_options"]
    if any(op.paginated for op in ops):
        core.append("to_raw_page")
        head += ["from .._constants import DEFAULT_PAGE_LIMIT"]
        head += ["from .._pagination import AsyncPaginator"]
    if any(not op.paginated for op in ops):
        core.append("to_raw_response")
    if any(op.query_params for op in ops):
        core.append("check_query_param")
    if any(op.body for op in ops):
        head.append("from .._converter import unstructure_params")
    head.append(f"from .._resource import {', '.join(core)}")
    head.append("from .._types import NOT_GIVEN, NotGivenOr")
    if any(op.path_params for op in ops):
        head.append("from .._urls import encode_path_param")
    head += model_imports(ops, models, "..types")
    head += ["", f'__all__ = ["{cls}", "{cls}WithRawResponse"]']
    return "\n".join(head) + "\n\n\n" + body


def render_sync_module(
    resource: str, ops: list[SpecOperation], models: dict[str, Model], tags: dict[str, str]
) -> str:
    cls, async_cls = pascal(resource), f"Async{pascal(resource)}"
    body = render_classes(resource, ops, models, resource_doc(resource, ops, tags), "sync")
    head = [HEADER + f'"""`{cls}`: the `client.{resource}` operations of the sync client."""']
    head += ["", "from __future__ import annotations", "", *std_imports(body), ""]
    if any(op.paginated for op in ops):
        head.append("from finalpos_async._constants import DEFAULT_PAGE_LIMIT")
        head.append("from finalpos_sync._pagination import SyncPaginator")
    head.append("from finalpos_async._types import NOT_GIVEN, NotGivenOr")
    head.append(f"from finalpos_async.resources.{resource} import {async_cls}")
    head += model_imports(ops, models, "finalpos_async.types", bodies=False)
    names = {"SyncResource", "arguments"}
    names |= {"to_raw_page" if op.paginated else "to_raw_response" for op in ops}
    head.append(f"from finalpos_sync._resource import {', '.join(sorted(names))}")
    head += ["", f'__all__ = ["{cls}", "{cls}WithRawResponse"]']
    return "\n".join(head) + "\n\n\n" + body


def render_async_init(resources: list[str]) -> str:
    lines = [
        HEADER + '"""`AsyncResourcesMixin`, which puts the resources on the client.',
        "",
        "Each resource module is imported on first use of its attribute, and the resource",
        "object is cached per client object.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from functools import cached_property",
        "from typing import TYPE_CHECKING",
        "",
        "if TYPE_CHECKING:",
        "    from .._resource import RequestSender",
        *(f"    from .{res} import Async{pascal(res)}" for res in resources),
        "",
        '__all__ = ["RESOURCES", "AsyncResourcesMixin"]',
        "",
        "RESOURCES: dict[str, str] = {",
        *(f'    "{res}": "Async{pascal(res)}",' for res in resources),
        "}",
        '"""Client attribute -> resource class (in `finalpos_async.resources.<attribute>`)."""',
        "",
        "",
        "class AsyncResourcesMixin:",
        '    """The API resources as attributes of `AsyncFinalPOS` (`client.customers`, ...)."""',
        "",
        "    def _sender(self) -> RequestSender:",
        '        """The request function the resources get: `AsyncFinalPOS.send`."""',
        "        raise NotImplementedError",
        "",
    ]
    for res in resources:
        lines += resource_attribute(res, f"Async{pascal(res)}", "self._sender()")
    return "\n".join(lines).rstrip() + "\n"


def render_sync_init(resources: list[str]) -> str:
    lines = [
        HEADER + '"""`SyncResourcesMixin`, which puts the resources on the sync client.',
        "",
        "Each resource module is imported on first use of its attribute (as on the async side).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from functools import cached_property",
        "from typing import TYPE_CHECKING",
        "",
        "from .._base_client import BaseSyncClient",
        "",
        "if TYPE_CHECKING:",
        *(f"    from .{res} import {pascal(res)}" for res in resources),
        "",
        '__all__ = ["SyncResourcesMixin"]',
        "",
        "",
        "class SyncResourcesMixin(BaseSyncClient):",
        '    """The API resources as attributes of `FinalPOS` (`client.customers`, ...)."""',
        "",
    ]
    for res in resources:
        lines += resource_attribute(res, pascal(res), f"self, self._run, lambda c: c.{res}")
    return "\n".join(lines).rstrip() + "\n"


def resource_attribute(resource: str, cls: str, args: str) -> list[str]:
    return [
        "    @cached_property",
        f"    def {resource}(self) -> {cls}:",
        f'        """The `{resource}` operations."""',
        f"        from .{resource} import {cls}",
        "",
        f"        return {cls}({args})",
        "",
    ]
