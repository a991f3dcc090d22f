"""`check_list`: the models' checks without building the models, raising what structuring does."""

from __future__ import annotations

from typing import Any

import pytest
from record_mutations import mutations
from spec_examples import SCHEMAS, full_example, model_name

from finalpos_async import types
from finalpos_async._converter import FieldError, check_list, structure_list


def outcome(run: Any, data: Any, cls: type) -> str | None:
    """None when `run` accepts the page, else its error (message and path)."""
    try:
        run(data, cls)
    except FieldError as error:
        return f"{type(error).__name__}: {error} @ {error.path_str}"
    return None


MODELS = [
    (name, getattr(types, model_name(name)), full_example(schema))
    for name, schema in SCHEMAS.items()
    if schema.get("properties")
]


@pytest.mark.parametrize(("name", "cls", "example"), MODELS, ids=[m[0] for m in MODELS])
def test_check_list_raises_exactly_what_structure_list_raises(
    name: str, cls: type, example: dict[str, Any]
) -> None:
    assert outcome(check_list, [example], cls) is None, name
    refused = 0
    for where, record in mutations(example):
        page = [example, example, record]
        expected = outcome(structure_list, page, cls)
        assert outcome(check_list, page, cls) == expected, where
        refused += expected is not None
        if expected is not None:
            assert "@ [2]" in expected, where  # the changed record is the one named
    assert refused  # the mutations reach the checks (every model has a typed field)


def test_check_list_refuses_what_is_not_a_page() -> None:
    for data in ({"id": "x"}, "x", None, [1]):
        assert outcome(check_list, data, types.Customer) == outcome(
            structure_list, data, types.Customer
        )
        assert outcome(check_list, data, types.Customer) is not None
    # an undocumented item (`dict`): any object, nothing else
    assert outcome(check_list, [{"a": 1}, {}], dict) is None
    refused = outcome(check_list, [{"a": 1}, 2], dict)
    assert refused is not None
    assert refused.endswith("@ [1]")
