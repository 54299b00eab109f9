"""``vm info`` under ``.columns`` prints what the full table, then the selection, prints.

The node computes only the columns a ``.columns`` can pick; whatever the
typed names (exact, prefixes, ambiguous, unknown, with ``.filter`` between),
the output and errors must be those of selecting from every column.
"""

from __future__ import annotations

import pytest
from nodes import MiniNode

from megabus.handlers.language.render import render
from megabus.handlers.language.transform import select_columns

TYPED = [
    "name,state",
    "state,name,id",
    "na,st",  # prefixes
    "ip",  # exact beats ip6
    "ip6,mac,tap,vlan,bridge",
    "s",  # ambiguous: state, snapshot, serial-ports
    "nosuch",
    "name,nosuch",
    "tags,memory,vcpus,qos,bond,qinq",
    "filesystem,disks,hostname,cc_active,type",
    "NAME",  # minicli matches the typed name against lowered headers
]


async def launched(node: MiniNode) -> None:
    # Defined VMs (their QEMU does not exist), so no guest needs to boot.
    for line in [
        "vm config qemu /nonexistent/qemu-for-vm-info",
        "vm config net a b",
        "vm config memory 512",
        "vm launch kvm one,two",
        "vm config net c",
        "vm config vcpus 2",
        "vm launch kvm three",
        "vm tag one color blue",
    ]:
        await node.run(line)


@pytest.mark.parametrize("typed", TYPED)
async def test_selected_columns_match_selecting_from_the_full_table(
    cnode: MiniNode, typed: str
) -> None:
    await launched(cnode)
    (full,) = await cnode.run("vm info")
    assert len(full[0].tabular or []) == 3
    try:
        expected = render(select_columns(full, typed.split(",")), cnode.state.flags)
        expected_errors: list[str] = []
    except Exception as err:  # the selection's own error, as .columns reports it
        expected, expected_errors = "", [str(err)]
    (batch,) = await cnode.run(f".columns {typed} vm info")
    assert [r.error for r in batch if r.error] == expected_errors
    if not expected_errors:
        assert render(batch, cnode.state.flags) == expected


async def test_columns_with_filter_between_still_filter_on_any_column(cnode: MiniNode) -> None:
    await launched(cnode)
    text = await cnode.text(".columns name .filter vcpus=2 vm info")
    assert text.splitlines()[-1].split("|")[-1].strip() == "three"
    assert len(text.splitlines()) == 2
