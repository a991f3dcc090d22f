"""The name filter behind the PostgreSQL journal's `count_seen`: never a false "new"."""

from __future__ import annotations

import pytest

from finalpos_async.bulk._name_filter import NameFilter


def test_a_name_noted_before_is_never_new_and_false_maybes_stay_rare() -> None:
    names = NameFilter(bits=1 << 20)
    noted = [f"{n:032x}" for n in range(50_000)]
    first_maybes = sum(names.add(name) for name in noted)
    assert first_maybes < len(noted) * 0.01  # the first time: "new", bar a few collisions
    assert all(names.add(name) for name in noted)  # every one noted: never "new" again
    assert all(name in names for name in noted)
    others = [f"other-{n}" for n in range(20_000)]
    false_maybes = sum(name in names for name in others)
    assert false_maybes < len(others) * 0.05  # 20 bits per name: about 0.1 % expected
    names.clear()
    assert not any(name in names for name in noted[:1000])


def test_a_filter_of_a_few_bits_only_says_maybe_more_often() -> None:
    names = NameFilter(bits=64)
    for n in range(200):
        names.add(str(n))
    assert all(str(n) in names for n in range(200))
    with pytest.raises(ValueError, match="power of two"):
        NameFilter(bits=100)
