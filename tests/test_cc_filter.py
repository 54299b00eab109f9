"""``cc filter``: 2.8's key forms, its summary row and its matching rules."""

from __future__ import annotations

import pytest

from megabus.bus.cc_messages import ClientInfo
from megabus.bus.errors import CommandError
from megabus.handlers.cc.filter import Filter, matches, parse

CLIENT = ClientInfo(
    uuid="99d2c66f-7e8f-4a26-af92-3876284d33f5",
    hostname="web",
    arch="amd64",
    os="linux",
    ips=["10.0.0.7", "fe80::1"],
    macs=["13:37:13:37:00:00"],
    tags={"role": "guest"},
)


def _no_info(key: str) -> str:
    return ""


@pytest.mark.parametrize(
    ("words", "row"),
    [
        (
            ["UUID=99D2C66F-7E8F-4A26-AF92-3876284D33F5"],
            ["99d2c66f-7e8f-4a26-af92-3876284d33f5", "", "", "", "", "", "{}"],
        ),
        (["ip=10.0.0.0/24"], ["", "", "", "", "10.0.0.0/24", "", "{}"]),
        (["tag=foo"], ["", "", "", "", "", "", '{"foo":""}']),
        (["tag=foo=bar"], ["", "", "", "", "", "", '{"foo":"bar"}']),
        (["tag=foo:bar"], ["", "", "", "", "", "", '{"foo":"bar"}']),
        (["foo="], ["", "", "", "", "", "", '{"foo":""}']),
        (
            ["tag=foo", "tag=bar:car", "a=b"],
            ["", "", "", "", "", "", '{"a":"b","bar":"car","foo":""}'],
        ),
    ],
)
def test_parse_keeps_2_8_key_forms(words: list[str], row: list[str]) -> None:
    assert parse(words).row() == row


def test_a_word_without_equals_is_refused() -> None:
    with pytest.raises(CommandError, match="malformed id=value pair: foo"):
        parse(["foo"])


def test_string_form_joins_fields_and_tags() -> None:
    assert str(parse(["hostname=a", "os=linux", "x=1"])) == "hostname=a && os=linux && x=1"
    assert str(Filter()) == ""


@pytest.mark.parametrize(
    ("words", "want"),
    [
        ([], True),
        (["hostname=web"], True),
        (["hostname=db"], False),
        (["uuid=99D2C66F-7E8F-4A26-AF92-3876284D33F5"], True),
        (["ip=10.0.0.0/24"], True),
        (["ip=10.0.1.0/24"], False),
        (["ip=10.0.0.7"], True),
        (["mac=13:37:13:37:00:00"], True),
        (["mac=13:37:13:37:00:01"], False),
        (["os=windows"], False),
        (["role=guest"], True),
        (["role=host"], False),
    ],
)
def test_matching(words: list[str], want: bool) -> None:
    assert matches(parse(words) if words else None, CLIENT, {}, _no_info) is want


def test_vm_info_columns_win_over_tags() -> None:
    info = {"name": "server", "vlan": "[DMZ]"}
    f = parse(["name=server"])
    assert matches(f, CLIENT, {"name": "other"}, lambda k: info.get(k, ""))
    assert not matches(parse(["name=client"]), CLIENT, {}, lambda k: info.get(k, ""))
    # a VM tag counts when no column has that name
    assert matches(parse(["team=red"]), CLIENT, {"team": "red"}, _no_info)
