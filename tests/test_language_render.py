"""Responses render exactly as minimega 2.8's Responses.String()."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from megabus.bus.messages import Flags, Response
from megabus.handlers.language.render import (
    _row_cmp,
    error_text,
    errors,
    minitest,
    render,
    sort_rows,
)

DEFAULTS = Flags()
NO_HOST = Flags(annotate=False)


def namespaces(host: str = "mm") -> Response:
    return Response(
        host=host,
        header=["namespace", "vlans", "active"],
        tabular=[["minimega", "101-4096", "false"], ["foo", "", "true"], ["bar", "", "false"]],
    )


def test_empty() -> None:
    assert render([], DEFAULTS) == ""


def test_table_sorted_without_host_column() -> None:
    # the layout of read_namespace.want
    assert render([namespaces()], NO_HOST) == (
        "namespace | vlans    | active\n"
        "bar       |          | false\n"
        "foo       |          | true\n"
        "minimega  | 101-4096 | false"
    )


def test_table_with_annotate_adds_host_column() -> None:
    resp = Response(host="node1", header=["name", "state"], tabular=[["foo0", "BUILDING"]])
    assert render([resp], DEFAULTS) == "host  | name | state\nnode1 | foo0 | BUILDING"


def test_first_response_flags_win_over_defaults() -> None:
    resp = Response(
        host="h", header=["name"], tabular=[["b"], ["a"]], flags=Flags(annotate=False, sort=False)
    )
    assert render([resp], DEFAULTS) == "name\nb\na"


def test_sort_compares_ints_numerically_and_strings_bytewise() -> None:
    resp = Response(
        header=["alias", "vlan"],
        tabular=[["foo", "200"], ["B", "103"], ["bar", "300"], ["A", "102"], ["x", "9"]],
    )
    lines = render([resp], NO_HOST).split("\n")
    assert [line.split()[0] for line in lines[1:]] == ["A", "B", "bar", "foo", "x"]
    ids = Response(header=["id"], tabular=[["10"], ["9"], ["100"]])
    assert render([ids], NO_HOST) == "id\n9\n10\n100"


def test_trailing_empty_cell_loses_padding_to_trim() -> None:
    resp = Response(header=["id", "responses", "filter"], tabular=[["1", "1", ""]])
    assert render([resp], NO_HOST) == "id   | responses | filter\n1    | 1         |"


def test_headers_off_trims_leading_padding_of_first_row() -> None:
    resp = Response(header=["a", "b"], tabular=[["", "x"], ["yy", "z"]])
    flags = Flags(annotate=False, headers=False)
    assert render([resp], flags) == "| x\nyy   | z"


def test_empty_table_prints_nothing() -> None:
    assert render([Response(host="h", header=["name"], tabular=[])], DEFAULTS) == ""


def test_simple_responses_with_and_without_annotate() -> None:
    resp = [Response(host="mm", response="  hello\n")]
    assert render(resp, DEFAULTS) == "mm:   hello"
    assert render(resp, NO_HOST) == "hello"


def test_compress_folds_hosts_by_identical_response() -> None:
    resps = [Response(host=f"node{i}", response="minimega 2.8") for i in (0, 1, 2, 3, 4, 6)]
    resps += [Response(host="node5", response="other"), Response(host="node7", error="boom")]
    assert render(resps, DEFAULTS) == "node5: other\nnode[0-4,6]: minimega 2.8"
    assert render(resps, Flags(compress=False)) == "\n".join(
        [f"node{i}: minimega 2.8" for i in (0, 1, 2, 3, 4, 6)] + ["node5: other"]
    )


def test_errors_are_never_rendered() -> None:
    resps = [Response(host="a", error="bad"), Response(host="b", response="ok")]
    assert render(resps, NO_HOST) == "ok"


def test_header_mismatch() -> None:
    a = Response(host="a", header=["x"], tabular=[["1"]])
    b = Response(host="b", header=["y"], tabular=[["2"]])
    assert render([a, b], DEFAULTS) == "header mismatch, hosts: a, b"


def test_width_mismatch_and_mixed_data() -> None:
    bad = Response(host="h", header=["x", "y"], tabular=[["1", "2"], ["3"]])
    assert render([bad], DEFAULTS) == "tabular width mismatch, host: h, row: 1"
    table = Response(host="a", tabular=[["1"]])
    text = Response(host="b", response="hi")
    assert render([table, text], DEFAULTS) == "responses mix simple and tabular data"


def test_csv_mode_uses_go_quoting() -> None:
    resp = Response(
        host="mm",
        header=["name", "tags"],
        tabular=[["b", 'say "hi"'], ["a", "x,y"], ["c", " lead"], ["d", ""]],
    )
    assert render([resp], Flags(mode="csv")) == (
        'host,name,tags\nmm,a,"x,y"\nmm,b,"say ""hi"""\nmm,c," lead"\nmm,d,'
    )
    assert render([resp], Flags(mode="csv", headers=False, annotate=False)).startswith('a,"x,y"')


def test_json_mode_is_go_json_marshal() -> None:
    assert render([Response(host="vm", response="2048")], Flags(mode="json")) == (
        '[{"Host":"vm","Response":"2048","Header":null,"Tabular":null,"Error":"","Data":null}]'
    )


class Payload(msgspec.Struct):
    name: str
    tags: dict[str, str]
    ratio: float


@dataclass
class Point:
    y: int
    x: int


def test_json_mode_encodes_data_like_go() -> None:
    resp = Response(
        host="h",
        header=["a"],
        tabular=[["<b>&"]],
        error="",
        data=[Payload("n", {"z": "1", "a": "2"}, 1.0), Point(1, 2), b"\x00\x01", 2.5, None],
        flags=Flags(mode="json", annotate=False),
    )
    assert render([resp], DEFAULTS) == (
        '[{"Host":"h","Response":"","Header":["a"],"Tabular":[["\\u003cb\\u003e\\u0026"]],'
        '"Error":"","Data":[{"name":"n","tags":{"a":"2","z":"1"},"ratio":1},'
        '{"y":1,"x":2},"AAE=",2.5,null]}]'
    )


def test_error_texts() -> None:
    resps = [
        Response(host="a", error="vm not found: bar"),
        Response(host="b", response="ok"),
        Response(host="c", error="alias already in use"),
    ]
    assert errors(resps) == ["vm not found: bar", "alias already in use"]
    assert error_text(resps) == "Error (a): vm not found: bar\nError (c): alias already in use"


def test_minitest_form() -> None:
    resps = [
        Response(host="a", error="zzz"),
        Response(host="b", error="alias already in use"),
        Response(host="c", header=["alias", "vlan"], tabular=[["A", "102"]]),
    ]
    assert (
        minitest(resps, NO_HOST) == "E: alias already in use\nE: zzz\nalias | vlan\nA     | 102\n"
    )
    assert minitest([Response(host="a")], NO_HOST) == ""


_SORT_TEXT = st.sampled_from(["1", "2", "10", "-3", "007", "+4", "a", "B", "é", "", "0", "-0"])


@settings(max_examples=400, deadline=None)
@given(
    st.integers(min_value=1, max_value=4).flatmap(
        lambda n: st.lists(st.lists(_SORT_TEXT, min_size=n, max_size=n), max_size=8)
    )
)
def test_sorted_tables_keep_minicli_order(rows: list[list[str]]) -> None:
    # sort_rows may use a key where it is exact; the order is always the pairwise one
    expected = sorted(rows, key=functools.cmp_to_key(_row_cmp))
    assert sort_rows(rows) == expected
