"""`finalpos_async/types/`: one attrs class per schema, and the lazy package of them."""

from __future__ import annotations

from collections import defaultdict

from .spec import Model
from .text import HEADER, camel, docstring, indented, std_imports


def render_model(model: Model) -> str:
    doc = model.description
    if model.incomplete:
        doc += (
            "\n\nThe spec lists this schema as incomplete: fields it does not list are kept in "
            "`extra`."
        )
    lines = ["@attrs.define(kw_only=True)", f"class {model.name}(Model):"]
    lines.append(indented(docstring(doc, 4), 4))
    for field in model.fields:
        meta = "" if camel(field.name) == field.wire else f', metadata={{"wire": "{field.wire}"}}'
        if field.required:
            decl = f"{field.name}: {field.model_type}"
            if meta:
                decl += f" = attrs.field({meta[2:]})"
        elif meta:
            decl = f"{field.name}: {field.model_type} | None = attrs.field(default=None{meta})"
        else:
            decl = f"{field.name}: {field.model_type} | None = None"
        lines += ["", f"    {decl}", indented(docstring(field.description, 4), 4)]
    lines += [
        "",
        # `lambda: {}` rather than `dict`: a type checker infers `dict[Unknown, Unknown]` from
        # the bare `dict` factory (pyright strict reports it); the lambda is typed by the field.
        "    extra: dict[str, Any] = attrs.field(factory=lambda: {}, eq=False)",
        '    """Fields the API sent that the spec does not list; sent back on write, not compared.',
        "",
        "    Keyed by wire name (for example the custom-table fields of a customer).",
        '    """',
    ]
    return "\n".join(lines)


def sort_models(models: list[Model]) -> list[Model]:
    """Referenced models first, so annotations resolve at class creation."""
    done: list[Model] = []
    names = {m.name: m for m in models}

    def visit(model: Model) -> None:
        if model in done:
            return
        for ref in sorted(model.refs):
            if ref in names:
                visit(names[ref])
        done.append(model)

    for model in sorted(models, key=lambda m: m.name):
        visit(model)
    return done


def render_types_module(module: str, models: dict[str, Model]) -> str:
    own = sort_models([m for m in models.values() if m.module == module])
    body = "\n\n\n".join(render_model(m) for m in own)
    imported = sorted(
        {ref for m in own for ref in m.refs if models[ref].module != module},
    )
    title = "shared by several resources" if module == "shared" else f"of `client.{module}`"
    head = [HEADER + f'"""Models {title}."""', "", "from __future__ import annotations", ""]
    head += std_imports(body)
    head += ["", "import attrs", "", "from .._model import Model"]
    if imported:
        head += ["", f"from .shared import {', '.join(imported)}"]
    names = ", ".join(f'"{m.name}"' for m in sorted(own, key=lambda m: m.name))
    head += ["", f"__all__ = [{names}]"]
    return "\n".join(head) + "\n\n\n" + body + "\n"


def render_types_init(models: dict[str, Model]) -> str:
    """The package of models, loading each module on first use of one of its names.

    Importing every model module costs about 100 ms (attrs builds each class at import), so
    `import finalpos_async` must not do it (a script that only catches an error, or pytest
    loading the plugin, would pay for every model): a module `__getattr__`
    imports `types/<module>.py` when one of its names is first asked for. Type checkers see
    the names through the `TYPE_CHECKING` imports.
    """
    modules: dict[str, list[str]] = defaultdict(list)
    for model in models.values():
        modules[model.module].append(model.name)
    lines = [
        HEADER
        + '"""Every model of the API, one module per resource, each imported on first use."""',
        "",
        "from __future__ import annotations",
        "",
        "import importlib",
        "from typing import TYPE_CHECKING, Any",
        "",
        "if TYPE_CHECKING:",
    ]
    for module in sorted(modules):
        lines.append(f"    from .{module} import {', '.join(sorted(modules[module]))}")
    everything = sorted(models)
    lines += ["", "__all__ = [" + ", ".join(f'"{n}"' for n in everything) + "]", ""]
    lines.append("_MODULES: dict[str, str] = {")
    for name in everything:
        lines.append(f'    "{name}": "{models[name].module}",')
    lines += [
        "}",
        '"""Model name -> the module of this package that defines it."""',
        "",
        "",
        "def __getattr__(name: str) -> Any:",
        "    module = _MODULES.get(name)",
        "    if module is None:",
        '        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")',
        '    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)',
        "    globals()[name] = value  # later lookups are plain module attributes",
        "    return value",
        "",
        "",
        "def __dir__() -> list[str]:",
        "    return sorted({*globals(), *__all__})",
    ]
    return "\n".join(lines) + "\n"
