""".filter and .columns reshape responses as minicli's builtins do."""

from __future__ import annotations

import pytest

from megabus.bus.messages import Flags, Response
from megabus.handlers.language import LanguageError
from megabus.handlers.language.render import render
from megabus.handlers.language.transform import filter_responses, parse_filter, select_columns

HEADER = ["id", "name", "state", "tags", "vlan"]


def vms(host: str = "mm") -> Response:
    return Response(
        host=host,
        header=list(HEADER),
        tabular=[
            ["0", "web", "RUNNING", "{role:web}", "[101]"],
            ["1", "db", "BUILDING", "{}", "[101 102]"],
            ["2", "cache", "running", "{}", "[]"],
        ],
    )


def names(responses: list[Response]) -> list[str]:
    return [row[1] for r in responses for row in r.tabular or []]


def test_equality_is_case_insensitive() -> None:
    assert names(filter_responses([vms()], "state=running")) == ["web", "cache"]
    assert names(filter_responses([vms()], "STATE=Running")) == ["web", "cache"]


def test_operators() -> None:
    assert names(filter_responses([vms()], "state!=running")) == ["db"]
    assert names(filter_responses([vms()], "name~a")) == ["cache"]
    assert names(filter_responses([vms()], "name!~a")) == ["web", "db"]


def test_lists_and_objects_match_by_substring() -> None:
    assert names(filter_responses([vms()], "vlan=102")) == ["db"]
    assert names(filter_responses([vms()], "tags=role")) == ["web"]


def test_column_prefix() -> None:
    assert names(filter_responses([vms()], "st=building")) == ["db"]


def test_exact_column_name_wins_over_longer_ones() -> None:
    resp = Response(header=["vlan", "vlans"], tabular=[["1", "x"], ["2", "y"]])
    (out,) = filter_responses([resp], "vlan=2")
    assert out.tabular == [["2", "y"]]


def test_ambiguous_and_unknown_columns() -> None:
    resp = Response(header=["state", "status"], tabular=[["a", "b"]])
    with pytest.raises(LanguageError, match=r"^ambiguous column `st`$"):
        filter_responses([resp], "st=a")
    with pytest.raises(LanguageError, match=r"^no such column `nope`$"):
        filter_responses([resp], "nope=a")


def test_invalid_filter() -> None:
    with pytest.raises(LanguageError, match=r"^invalid filter, see help$"):
        filter_responses([vms()], "state")
    with pytest.raises(LanguageError, match=r"^invalid filter, see help$"):
        parse_filter("a=b=c")


def test_host_filters_whole_responses() -> None:
    out = filter_responses([vms("n1"), vms("n2"), Response(host="n1", response="x")], "host=N1")
    assert [r.host for r in out] == ["n1", "n1"]


def test_simple_responses_pass_through() -> None:
    simple = Response(host="mm", response="hello")
    assert filter_responses([simple], "name=web") == [simple]


def test_filter_does_not_mutate_input() -> None:
    original = vms()
    filter_responses([original], "name=web")
    assert original.tabular is not None
    assert len(original.tabular) == 3


def test_filters_stack_and_render() -> None:
    once = filter_responses([vms()], "state=running")
    twice = filter_responses(once, "id=2")
    assert render(twice, Flags(annotate=False)) == (
        "id   | name  | state   | tags | vlan\n2    | cache | running | {}   | []"
    )


def test_columns_project_reorder_and_rename() -> None:
    (out,) = select_columns([vms()], ["st", "name"])
    assert out.header == ["state", "name"]
    assert out.tabular == [["RUNNING", "web"], ["BUILDING", "db"], ["running", "cache"]]
    assert render([out], Flags(annotate=False)) == (
        "state    | name\nBUILDING | db\nRUNNING  | web\nrunning  | cache"
    )


def test_columns_errors() -> None:
    with pytest.raises(LanguageError, match=r"^no such column `host`$"):
        select_columns([vms()], ["host"])
    resp = Response(header=["state", "status"], tabular=[])
    with pytest.raises(LanguageError, match=r"^ambiguous column `s`$"):
        select_columns([resp], ["s"])


def test_columns_on_header_without_rows_and_on_simple_responses() -> None:
    headed = Response(header=["namespace", "vlans", "active"])
    simple = Response(response="text")
    out = select_columns([headed, simple], ["namespace", "active"])
    assert out[0].header == ["namespace", "active"]
    assert out[1] == simple


def test_columns_then_filter_on_a_dropped_column_fails() -> None:
    projected = select_columns([vms()], ["name", "state"])
    with pytest.raises(LanguageError, match=r"^no such column `vlan`$"):
        filter_responses(projected, "vlan=101")
