"""tabwrite lays text out like Go's text/tabwriter."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from megabus.handlers.language.tabwriter import table as table_layout
from megabus.handlers.language.tabwriter import tabwrite


def table(*rows: list[str]) -> str:
    return "".join("\t| ".join(row) + "\n" for row in rows)


def test_minicli_table_layout() -> None:
    text = table(
        ["namespace", "vlans", "active"],
        ["bar", "", "false"],
        ["minimega", "101-4096", "false"],
    )
    assert tabwrite(text, minwidth=5, tabwidth=0) == (
        "namespace | vlans    | active\n"
        "bar       |          | false\n"
        "minimega  | 101-4096 | false\n"
    )


def test_minwidth_pads_short_columns() -> None:
    text = table(["ip6", "ip", "name"], ["[]", "[]", "foo1"])
    assert tabwrite(text, minwidth=5, tabwidth=0) == "ip6  | ip | name\n[]   | [] | foo1\n"


def test_last_cell_is_not_a_column_and_keeps_trailing_padding() -> None:
    text = table(["id", "responses", "filter"], ["1", "1", ""])
    assert (
        tabwrite(text, minwidth=5, tabwidth=0) == "id   | responses | filter\n1    | 1         | \n"
    )


def test_width_counts_runes() -> None:
    assert tabwrite("é\tx\nab\ty\n", padding=1) == "é  x\nab y\n"


def test_column_blocks_break_at_lines_without_the_column() -> None:
    text = "a\tb\nlonger\tc\nbreak\nx\ty\n"
    assert tabwrite(text) == "a      b\nlonger c\nbreak\nx y\n"


def test_nested_blocks() -> None:
    text = "a\tb\tc\naa\tbbbb\nx\ty\tz\n"
    # column 1 only exists on line 0 and 2 (line 1's "bbbb" is its last cell)
    assert tabwrite(text) == "a  b c\naa bbbb\nx  y z\n"


def test_text_after_last_newline_is_kept_without_newline() -> None:
    assert tabwrite("k:\tv\nkey:\tw") == "k:   v\nkey: w"


def test_align_right_and_tab_padding() -> None:
    assert tabwrite("1\tx\n100\ty\n", align_right=True) == "   1x\n 100y\n"
    assert tabwrite("a\tb\nabcdefghi\tc\n", padchar="\t", tabwidth=8, padding=0) == (
        "a\t\tb\nabcdefghi\tc\n"
    )


def test_form_feed_ends_a_section() -> None:
    assert tabwrite("a\tb\fxxxxxx\ty\n") == "a b\nxxxxxx y\n"


def test_bad_padchar() -> None:
    with pytest.raises(ValueError, match="padchar"):
        tabwrite("x", padchar="ab")


def untabify(block: str) -> str:
    """Turn minimega's padded ``Key:   value`` lines back into ``Key:\\tvalue``."""
    out = []
    for line in block.split("\n"):
        m = re.match(r"^([^:]+:)( +)(.*)$", line)
        out.append(f"{m.group(1)}\t{m.group(3)}" if m else line)
    return "\n".join(out)


def test_vm_config_dump_layout(compat_dir: Path) -> None:
    # minimega prints `vm config` through a tabwriter with minwidth 5,
    # tabwidth 0, padding 1 and spaces: the same parameters as its tables
    want = (compat_dir / "vm_config_save.want").read_text()
    block = want.split("## vm config\n", 1)[1].split("\n## ", 1)[0]
    assert "Coschedule limit: -1" in block
    assert tabwrite(untabify(block), minwidth=5, tabwidth=0, padding=1) == block


_CELL_TEXT = st.text(alphabet=st.sampled_from("ab Z|[]é日\t\n\v\f"), max_size=10)


@settings(max_examples=400, deadline=None)
@given(
    st.integers(min_value=1, max_value=5).flatmap(
        lambda n: st.lists(st.lists(_CELL_TEXT, min_size=n, max_size=n), max_size=6)
    ),
    st.sampled_from([0, 5]),
)
def test_the_table_shortcut_lays_out_as_the_general_tabwriter(
    rows: list[list[str]], minwidth: int
) -> None:
    # render() takes the shortcut for tables; it must never differ from Go's layout
    fast = table_layout(rows, "| ", minwidth=minwidth)
    slow = tabwrite("".join("\t| ".join(r) + "\n" for r in rows), minwidth=minwidth, tabwidth=0)
    if fast is None:
        assert any(ch in "".join(map("".join, rows)) for ch in "\t\n\v\f")
    else:
        assert fast == slow
