"""Name ranges expand and fold as minimega's pkg/ranges does."""

from __future__ import annotations

import pytest

from megabus.handlers.language import LanguageError
from megabus.handlers.language.ranges import expand, natural_key, unsplit


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("foo[0-2]", ["foo0", "foo1", "foo2"]),
        ("foo[1,3-4]", ["foo1", "foo3", "foo4"]),
        ("a,b", ["a", "b"]),
        ("kn[1-2],x,kn[5]", ["kn1", "kn2", "x", "kn5"]),
        ("foo[3,1,2,2]", ["foo1", "foo2", "foo3"]),
        ("plain", ["plain"]),
        ("", []),
        # leading zeros: kept when both ends of a subrange have the same width
        ("foo[01-03]", ["foo01", "foo02", "foo03"]),
        ("foo[8-10]", ["foo8", "foo9", "foo10"]),
        ("foo[08-10]", ["foo08", "foo09", "foo10"]),
        ("foo[1,02]", ["foo1", "foo2"]),
    ],
)
def test_expand(spec: str, names: list[str]) -> None:
    assert expand(spec) == names


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("foo[1-2", "unterminated '['"),
        ("foo]", "unmatched ']' at char 3"),
        ("foo[[1]]", "nested '[' at char 4"),
        ("foo[a]", 'strconv.Atoi: parsing "a": invalid syntax'),
        ("foo[1-2-3]", "invalid subrange 1-2-3"),
        ("foo[1-2].bar", "invalid range specification"),
        ("foo[]", 'strconv.Atoi: parsing "": invalid syntax'),
    ],
)
def test_expand_errors(spec: str, error: str) -> None:
    with pytest.raises(LanguageError) as info:
        expand(spec)
    assert str(info.value) == error


@pytest.mark.parametrize(
    ("names", "folded"),
    [
        ([f"node{i}" for i in (0, 1, 2, 3, 4, 6)], "node[0-4,6]"),
        ([f"node{i}" for i in (6, 9, 8, 0, 7, 1, 2, 3, 4)], "node[0-4,6-9]"),
        (["node1", "node3", "node4"], "node[1,3-4]"),
        (["foo1.bar", "foo2.bar"], "foo[1-2].bar"),
        (["kn1", "kn2", "kn3", "kn5", "x"], "kn[1-3,5],x"),
        (["b", "a"], "a,b"),
        (["solo"], "solo"),
        (["n1", "n1"], "n1"),
        # a shorter number that a longer one extends is kept (pkg/ranges drops it)
        (["n1", "n12"], "n[1,12]"),
    ],
)
def test_unsplit(names: list[str], folded: str) -> None:
    assert unsplit(names) == folded


def test_expand_then_unsplit_round_trips() -> None:
    assert unsplit(expand("vm[1-5,7,10-12]")) == "vm[1-5,7,10-12]"


def test_natural_key_orders_numbers_numerically() -> None:
    assert sorted(["foo10", "foo2", "bar", "foo1"], key=natural_key) == [
        "bar",
        "foo1",
        "foo2",
        "foo10",
    ]
