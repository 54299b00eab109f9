"""The ``namespace`` command as a user types it (2.8's texts and tables)."""

from __future__ import annotations

from nodes import MiniNode, transcript

READ_NAMESPACE = """.columns namespace,active namespace
namespace foo
.columns namespace,active namespace
namespace bar
.columns namespace,active namespace
namespace foo namespace
.columns namespace,active namespace"""

READ_NAMESPACE_WANT = """## .columns namespace,active namespace
namespace | active
minimega  | true
## namespace foo
## .columns namespace,active namespace
namespace | active
foo       | true
minimega  | false
## namespace bar
## .columns namespace,active namespace
namespace | active
bar       | true
foo       | false
minimega  | false
## namespace foo namespace
namespace | vlans    | active
bar       |          | false
foo       |          | true
minimega  | 101-4096 | false
## .columns namespace,active namespace
namespace | active
bar       | true
foo       | false
minimega  | false
"""


async def test_read_namespace_script_matches_2_8(node: MiniNode) -> None:
    assert await transcript(node, READ_NAMESPACE) == READ_NAMESPACE_WANT


async def test_switching_twice_and_leaving_twice_are_errors(node: MiniNode) -> None:
    got = await transcript(node, "namespace ns3\nnamespace ns3\nclear namespace\nclear namespace")
    assert got == (
        "## namespace ns3\n"
        "## namespace ns3\n"
        "E: already in namespace: ns3\n"
        "## clear namespace\n"
        "## clear namespace\n"
        "E: already in namespace: minimega\n"
    )


async def test_a_command_in_another_namespace_leaves_the_active_one(node: MiniNode) -> None:
    await node.run("namespace foo vlans add x 200")
    assert node.state.active == "minimega"
    assert await node.text("vlans") == ""
    assert await node.text("namespace foo vlans") == "alias | vlan\nx     | 200"
    # a switch inside is undone too, as 2.8 reverts the namespace
    await node.run("namespace foo namespace bar")
    assert node.state.active == "minimega"


async def test_the_vlans_column_shows_own_ranges_and_the_global_one(node: MiniNode) -> None:
    await node.run("namespace foo vlans range 200 300")
    await node.run("vlans range 1000 2000")
    assert await node.text("namespace") == (
        "namespace | vlans     | active\n"
        "foo       | 200-300   | false\n"
        "minimega  | 1000-2000 | true"
    )


async def test_bad_names_and_unknown_namespaces_get_clear_errors(node: MiniNode) -> None:
    assert await node.errors("namespace 'a b'") == [
        "invalid name; must only include letters, numbers, hyphens and underscores"
    ]
    assert await node.errors("namespace föö") == [
        "invalid name; must only include letters, numbers, hyphens and underscores"
    ]
    assert await node.errors("clear namespace nope") == ["unknown namespace: nope"]
    assert sorted(node.state.namespaces) == ["minimega"]


async def test_destroying_a_namespace_frees_its_vlans_and_leaves_it(node: MiniNode) -> None:
    await node.run("namespace foo")
    await node.run("vlans range 200 210")
    await node.run("vlans add x 205")
    await node.run("clear namespace foo")
    assert node.state.active == "minimega"
    assert sorted(node.state.namespaces) == ["minimega"]
    assert node.state.vlans.aliases("foo") == []
    assert node.state.vlans.namespace_range("foo") is None
    await node.run("namespace bar")
    await node.run("clear namespace all")
    assert node.state.active == "minimega"
    assert sorted(node.state.namespaces) == ["minimega"]
