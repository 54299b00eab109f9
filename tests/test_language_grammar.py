"""Lines compile against minimega's patterns with minicli's matching rules."""

from __future__ import annotations

import re

import pytest
from compat import REFERENCE_DIR

from megabus.handlers.language import Grammar, LanguageError
from megabus.handlers.language.lexer import lex

# A realistic slice of minimega 2.8's patterns (minimega-2.8.md section 1.2).
PATTERNS = {
    "csv": [".csv [true,false]", ".csv <true,false> (command)"],
    "json": [".json [true,false]", ".json <true,false> (command)"],
    "annotate": [".annotate [true,false]", ".annotate <true,false> (command)"],
    "filter": [".filter <filter> (command)"],
    "columns": [".columns <columns as csv> (command)"],
    "alias": [".alias", ".alias <alias>..."],
    "env": [".env [name]", ".env <name> <value>"],
    "vm_info": ["vm info [summary,]"],
    "vm_launch": [
        "vm launch",
        "vm launch <kvm,> <name or count> [config]",
        "vm launch <container,> <name or count> [config]",
    ],
    "vm_kill": ["vm <kill,> <vm target>"],
    "vm_start": ["vm <start,> <vm target>"],
    "vm_stop": ["vm <stop,> <vm target>"],
    "vm_tag": ["vm tag <vm target> [key or all]", "vm tag <vm target> <key> <value>"],
    "vm_config": [
        "vm config",
        "vm config <save,> <name>",
        "vm config <restore,> [name]",
        "vm config <clone,> <vm name>",
    ],
    "vm_config_disks": ["vm config disks [diskspec]..."],
    "vm_config_networks": ["vm config networks [netspec]..."],
    "vm_config_snapshot": ["vm config snapshot [true,false]"],
    "vm_config_schedule": ["vm config schedule [value]"],
    "vm_config_sockets": ["vm config sockets [value]"],
    "vm_config_serial": ["vm config serial-ports [value]"],
    "vm_config_tags": ["vm config tags", "vm config tags <key> [value]"],
    "vm_config_qemu": ["vm config qemu [value]"],
    "vm_config_qemu_append": ["vm config qemu-append [value]..."],
    "vm_config_qemu_override": [
        "vm config qemu-override",
        "vm config qemu-override <match> <replacement>",
    ],
    "clear_vm_config": [
        "clear vm config",
        "clear vm config <qemu,>",
        "clear vm config <qemu-append,>",
    ],
    "vlans": [
        "vlans",
        "vlans <range,>",
        "vlans <range,> <min> <max>",
        "vlans <add,> <alias> <vlan>",
        "vlans <blacklist,> [vlan]",
    ],
    "clear_vlans": ["clear vlans [prefix]"],
    "namespace": ["namespace [name]", "namespace <name> (command)"],
    "ns_run": ["ns <run,> (command)"],
    "ns_queueing": ["ns <queueing,> [true,false]"],
    "ns_schedule": ["ns <schedule,>", "ns <schedule,> <dry-run,>", "ns <schedule,> <dump,>"],
    "status": ["status updates [frequency]"],
    "echo": ["echo [args]..."],
    "mesh_send": ["mesh send <clients or all> (command)"],
}


@pytest.fixture
def grammar() -> Grammar:
    g = Grammar()
    for name, patterns in PATTERNS.items():
        g.add(name, patterns)
    return g


def test_full_words(grammar: Grammar) -> None:
    cmd = grammar.compile("vlans add foo 200")
    assert cmd is not None
    assert cmd.handler == "vlans"
    assert cmd.pattern == "vlans <add,> <alias> <vlan>"
    assert cmd.bool_args == {"add": True}
    assert cmd.string_args == {"alias": "foo", "vlan": "200"}
    assert cmd.original == "vlans add foo 200"


def test_literals_and_choices_match_by_prefix(grammar: Grammar) -> None:
    cmd = grammar.compile("vm config net a b")
    assert cmd is not None
    assert (cmd.handler, cmd.list_args) == ("vm_config_networks", {"netspec": ["a", "b"]})
    cmd = grammar.compile("vl ad foo 200")
    assert cmd is not None
    assert cmd.bool_args == {"add": True}
    cmd = grammar.compile("status update 5s")
    assert cmd is not None
    assert cmd.string_args == {"frequency": "5s"}
    cmd = grammar.compile(".col name,state vm info")
    assert cmd is not None
    assert cmd.handler == "columns"


def test_exact_match_beats_prefix_matches(grammar: Grammar) -> None:
    # "qemu" is typed in full: it wins over qemu-append and qemu-override
    cmd = grammar.compile("vm config qemu kvm")
    assert cmd is not None
    assert cmd.handler == "vm_config_qemu"
    cmd = grammar.compile("clear vm config qemu")
    assert cmd is not None
    assert cmd.bool_args == {"qemu": True}


def test_ambiguous_prefix_is_invalid(grammar: Grammar) -> None:
    # "s" matches schedule, sockets, serial-ports, snapshot and save
    with pytest.raises(LanguageError, match=r"^invalid command: `vm config s foo`$"):
        grammar.compile("vm config s foo")
    # qemu-append takes both words as a list, qemu-override as match/replacement
    with pytest.raises(LanguageError, match=r"^invalid command: `vm config qemu- x y`$"):
        grammar.compile("  vm config qemu- x y  ")
    single = grammar.compile("vm config qemu- x")
    assert single is not None
    assert single.handler == "vm_config_qemu_append"


def test_no_match_is_invalid(grammar: Grammar) -> None:
    with pytest.raises(LanguageError, match=r"^invalid command: `vm`$"):
        grammar.compile("vm")
    with pytest.raises(LanguageError, match=r"^invalid command: `vlans add foo`$"):
        grammar.compile("vlans add foo")
    with pytest.raises(LanguageError, match=r"^invalid command: `frobnicate`$"):
        grammar.compile("frobnicate")


def test_lex_errors_surface(grammar: Grammar) -> None:
    with pytest.raises(LanguageError, match=r'^missing terminal "$'):
        grammar.compile('echo "abc')


def test_optional_items_match_with_and_without(grammar: Grammar) -> None:
    bare = grammar.compile("vm info")
    summary = grammar.compile("vm info summary")
    assert bare is not None
    assert summary is not None
    assert bare.bool_args == {}
    assert summary.bool_args == {"summary": True}
    assert bare.pattern == summary.pattern == "vm info [summary,]"
    tag = grammar.compile("vm tag foo")
    assert tag is not None
    assert tag.string_args == {"vm": "foo"}
    tag = grammar.compile("vm tag foo color blue")
    assert tag is not None
    assert tag.pattern == "vm tag <vm target> <key> <value>"
    assert tag.string_args == {"vm": "foo", "key": "color", "value": "blue"}


def test_lists(grammar: Grammar) -> None:
    empty = grammar.compile("echo")
    assert empty is not None
    assert empty.list_args == {}
    words = grammar.compile('echo a "b c" d')
    assert words is not None
    assert words.items("args") == ["a", "b c", "d"]
    assert grammar.compile(".alias") is not None
    alias = grammar.compile(".alias vmr=.filter state=running vm info")
    assert alias is not None
    assert alias.items("alias") == ["vmr=.filter", "state=running", "vm", "info"]


def test_nested_commands(grammar: Grammar) -> None:
    cmd = grammar.compile('.columns name,state .filter "name=a b" vm info')
    assert cmd is not None
    assert cmd.handler == "columns"
    assert cmd.original == '.columns name,state .filter "name=a b" vm info'
    inner = cmd.subcommand
    assert inner is not None
    assert inner.handler == "filter"
    # rebuilt from tokens, re-quoted like Go's %q
    assert inner.original == '.filter "name=a b" vm info'
    assert inner.arg("filter") == "name=a b"
    assert inner.subcommand is not None
    assert inner.subcommand.pattern == "vm info [summary,]"
    assert inner.subcommand.original == "vm info"


def test_namespace_with_and_without_command(grammar: Grammar) -> None:
    switch = grammar.compile("namespace foo")
    assert switch is not None
    assert switch.subcommand is None
    assert switch.string_args == {"name": "foo"}
    run = grammar.compile("namespace foo vlans add a 1")
    assert run is not None
    assert run.pattern == "namespace <name> (command)"
    assert run.subcommand is not None
    assert run.subcommand.handler == "vlans"


def test_invalid_nested_command_invalidates_the_line(grammar: Grammar) -> None:
    with pytest.raises(LanguageError, match=r"^invalid command: `ns run bogus`$"):
        grammar.compile("ns run bogus")


def test_empty_and_comment_lines_compile_to_nothing(grammar: Grammar) -> None:
    assert grammar.compile("") is None
    assert grammar.compile("   ") is None
    assert grammar.compile("# comment") is None
    cmd = grammar.compile("vm config net A # should be 102")
    assert cmd is not None
    assert cmd.list_args == {"netspec": ["A"]}
    assert cmd.original == "vm config net A # should be 102"


def test_compile_items(grammar: Grammar) -> None:
    cmd = grammar.compile_items(lex('echo "x y"'))
    assert cmd is not None
    assert cmd.original == 'echo "x y"'
    assert grammar.compile_items([]) is None
    with pytest.raises(LanguageError, match=r"^invalid command: `nope`$"):
        grammar.compile_items(lex("nope"))


def test_empty_word_matches_every_literal_prefix(grammar: Grammar) -> None:
    # "" is a prefix of every word: minicli finds this ambiguous too
    with pytest.raises(LanguageError, match=r"^invalid command: `vlans \"\"`$"):
        grammar.compile('vlans ""')


def test_conflicting_and_malformed_patterns_are_refused(grammar: Grammar) -> None:
    with pytest.raises(ValueError, match="conflicting"):
        grammar.add("dup", ["vlans"])
    with pytest.raises(ValueError, match="conflicting"):
        grammar.add("dup", ["vm info"])
    with pytest.raises(ValueError, match="missing terminal"):
        grammar.add("bad", ["vm <oops"])


def test_patterns_lists_registrations_in_order(grammar: Grammar) -> None:
    listed = grammar.patterns()
    assert listed[0] == ("csv", ".csv [true,false]")
    assert len(listed) == sum(len(p) for p in PATTERNS.values())


def test_suggest_completes_the_last_word(grammar: Grammar) -> None:
    assert grammar.suggest("vm con") == ["config"]
    assert grammar.suggest("vm config qemu") == ["qemu", "qemu-append", "qemu-override"]
    assert grammar.suggest("vlans ") == ["add", "blacklist", "range"]
    assert grammar.suggest("vm config snapshot t") == ["true"]
    assert grammar.suggest("zzz ") == []
    assert grammar.suggest('echo "open') == []


def test_help_matches(grammar: Grammar) -> None:
    assert grammar.help_matches("vlans") == ["vlans"]
    assert set(grammar.help_matches("vm config qemu")) == {
        "vm_config_qemu",
        "vm_config_qemu_append",
        "vm_config_qemu_override",
    }


REFERENCE = REFERENCE_DIR / "minimega-2.8.md"


def reference_patterns() -> list[str]:
    text = REFERENCE.read_text()
    section = text[text.index("#### builtins") : text.index("### 1.3")]
    out: list[str] = []
    for block in re.findall(r"```\n(.*?)```", section, re.S):
        for line in block.splitlines():
            pattern = line.split("   #")[0].rstrip()
            if pattern:
                out.append(pattern)
    return out


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference text not available")
def test_all_minimega_patterns_register_and_compile() -> None:
    patterns = reference_patterns()
    assert len(patterns) == 414
    g = Grammar()
    for pattern in patterns:
        g.add(pattern, [pattern])
    lines = [
        "vm config networks a b c",
        ".columns name,state .filter state=running namespace foo vm info",
        "tap create 10 bridge mega_bridge ip 10.0.0.1/24 tap0",
        "router r1 dhcp 10.0.0.0 static 00:11:22:33:44:55 10.0.0.5",
        "cc exec-once ls",
    ]
    for line in lines:
        assert g.compile(line) is not None, line


def test_a_line_compiled_again_is_a_fresh_command(grammar: Grammar) -> None:
    # Handlers and the preprocessor change a command's arguments in place; a
    # line compiled again (the grammar keeps compiled lines) must not see that.
    first = grammar.compile("namespace foo vm config net a b")
    assert first is not None
    assert first.subcommand is not None
    first.subcommand.list_args["netspec"].append("changed")
    first.subcommand.string_args["x"] = "y"
    first.subcommand.record = False
    first.source = "meshage"
    again = grammar.compile("namespace foo vm config net a b")
    assert again is not None
    assert again.subcommand is not None
    assert again.source == ""
    assert again.subcommand.record
    assert again.subcommand.list_args == {"netspec": ["a", "b"]}
    assert again.subcommand.string_args == {}
    assert again.string_args == {"name": "foo"}


def test_patterns_added_later_apply_to_lines_compiled_before(grammar: Grammar) -> None:
    cmd = grammar.compile("vl ad foo 200")
    assert cmd is not None
    assert cmd.handler == "vlans"
    grammar.add("vlx", ["vlx <add,> <alias> <vlan>"])
    # "vl" now names two commands: the line compiled before no longer compiles
    with pytest.raises(LanguageError, match=r"^invalid command: `vl ad foo 200`$"):
        grammar.compile("vl ad foo 200")
