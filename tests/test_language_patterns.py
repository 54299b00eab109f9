"""Pattern strings parse into minicli's item kinds."""

from __future__ import annotations

import pytest

from megabus.handlers.language.patterns import Kind, PatternItem, parse_pattern, pattern_string


def test_literals_and_required_string_with_documentation_words() -> None:
    items = parse_pattern("vm <kill,> <vm target>")
    assert items == [
        PatternItem(Kind.LITERAL, "vm", "vm"),
        PatternItem(Kind.CHOICE, "kill", "kill,", ("kill",)),
        PatternItem(Kind.STRING, "vm", "vm target"),
    ]


def test_key_is_first_word() -> None:
    (item,) = parse_pattern("<IPv4/MASK or IPv6/MASK or dhcp>")
    assert (item.kind, item.key) == (Kind.STRING, "IPv4/MASK")


def test_choices() -> None:
    (item,) = parse_pattern("<active-backup,balance-slb,balance-tcp>")
    assert item.kind is Kind.CHOICE
    assert item.options == ("active-backup", "balance-slb", "balance-tcp")
    assert not item.optional


def test_optional_items() -> None:
    assert parse_pattern("vm config snapshot [true,false]")[-1] == PatternItem(
        Kind.CHOICE, "true", "true,false", ("true", "false"), optional=True
    )
    assert parse_pattern("vm info [summary,]")[-1].options == ("summary",)
    last = parse_pattern("vlans <blacklist,> [vlan]")[-1]
    assert (last.kind, last.key, last.optional) == (Kind.STRING, "vlan", True)


def test_lists_and_commands() -> None:
    required = parse_pattern("cc <send,> <file>...")[-1]
    assert (required.kind, required.key, required.optional) == (Kind.LIST, "file", False)
    optional = parse_pattern("vm config disks [diskspec]...")[-1]
    assert (optional.kind, optional.key, optional.optional) == (Kind.LIST, "diskspec", True)
    nested = parse_pattern("namespace <name> (command)")[-1]
    assert (nested.kind, nested.key) == (Kind.COMMAND, "command")


def test_type_bits_match_minicli_json() -> None:
    kinds = [item.type_bits for item in parse_pattern(".csv <true,false> (command)")]
    assert kinds == [2, 16, 4]
    assert parse_pattern("a [true,false]")[-1].type_bits == 17


def test_canonical_string() -> None:
    text = "tap <create,> <vlan> bridge <bridge> ip <ip> [tap name]"
    assert (
        pattern_string(parse_pattern(text))
        == "tap create <vlan> bridge <bridge> ip <ip> [tap name]"
    )
    assert pattern_string(parse_pattern("echo [args]...")) == "echo [args]..."


@pytest.mark.parametrize(
    "bad",
    [
        "vm <name",
        "vm [a <b>]",
        'vm "quoted"',
        "vm [opt] more",
        "vm <list>... more",
        "(command) more",
        "vm <a,b c>",
        "vm <name>..",
        "vm <a,b>...",
        "",
        "vm <>",
        "vm name>",
    ],
)
def test_malformed_patterns_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_pattern(bad)
