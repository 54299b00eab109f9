"""The argument preprocessor expands variables and file: paths as minimega does."""

from megabus.handlers.language.command import Command
from megabus.handlers.node.preprocess import expand_env, preprocess

ENV = {"images": "/srv/images", "A": "x", "1": "one"}


def test_variables_expand_like_go_expandenv() -> None:
    assert expand_env("$images/minicccfs", ENV) == "/srv/images/minicccfs"
    assert expand_env("${A}b", ENV) == "xb"
    assert expand_env("$Ab", ENV) == ""  # unset variables become empty
    assert expand_env("cost $", ENV) == "cost $"  # a trailing dollar stays
    assert expand_env("a$/b", ENV) == "a$/b"  # dollar before a non-name stays
    assert expand_env("${}x", ENV) == "x"  # "${}" is eaten
    assert expand_env("${A", ENV) == "A"  # "${" with no brace is eaten
    assert expand_env("$1st", ENV) == "onest"  # special one-character names


def test_file_prefix_becomes_a_path_under_the_file_root() -> None:
    cmd = Command(
        original="vm config disk file:a.qcow2",
        string_args={"x": "file:sub/a.qcow2"},
        list_args={"disk": ["file:/b", "plain", "$A"]},
    )
    preprocess(cmd, "/tmp/minimega/files")
    assert cmd.string_args["x"] == "/tmp/minimega/files/sub/a.qcow2"
    assert cmd.list_args["disk"][0] == "/tmp/minimega/files/b"
    assert cmd.list_args["disk"][1] == "plain"
