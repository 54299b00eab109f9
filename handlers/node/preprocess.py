"""minimega's argument preprocessor: ``$VAR``, ``${VAR}``, ``file:``, ``tar:``, URLs.

Runs on every string and list argument of a command before its handler
(unless ``.preprocess false``). Environment variables expand exactly as Go's
``os.ExpandEnv`` does (unset variables become empty, ``${}`` is eaten), since
scripts such as the compat tests' ``$images/minicccfs`` depend on it.
``file:<path>`` becomes the absolute path under the node's file root
(:func:`preprocess_and_fetch`, what the node runs, fetches it from the
cluster first); ``tar:<file>`` the directory its tarball unpacks to;
``http(s)://...`` the downloaded file under the file root.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping

from megabus.bus.connection import Bus
from megabus.handlers.files import Files
from megabus.handlers.language.command import Command
from megabus.handlers.node.progress import Progress

_SPECIAL = set("*#$@!?-0123456789")


def _shell_name(s: str) -> tuple[str, int]:
    """The variable name at the start of ``s`` and how many characters it takes."""
    if s[0] == "{":
        if len(s) > 2 and s[1] in _SPECIAL and s[2] == "}":
            return s[1], 3
        end = s.find("}", 1)
        if end == -1:
            return "", 1  # "${" with no closing brace is eaten
        if end == 1:
            return "", 2  # "${}" is eaten
        return s[1:end], end + 1
    if s[0] in _SPECIAL:
        return s[0], 1
    i = 0
    while i < len(s) and (s[i] == "_" or (s[i].isascii() and s[i].isalnum())):
        i += 1
    return s[:i], i


def expand_env(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``$VAR`` and ``${VAR}`` in ``text`` with Go's ``os.ExpandEnv`` rules."""
    if "$" not in text:
        return text
    env = os.environ if environ is None else environ
    out: list[str] = []
    start = 0
    j = 0
    while j < len(text):
        if text[j] == "$" and j + 1 < len(text):
            out.append(text[start:j])
            name, width = _shell_name(text[j + 1 :])
            if name:
                out.append(env.get(name, ""))
            elif width == 0:
                out.append("$")  # "$" not followed by a name stays
            j += width
            start = j + 1
        j += 1
    out.append(text[start:])
    return "".join(out)


def preprocess_value(text: str, files_dir: str) -> str:
    """Preprocess one argument value."""
    text = expand_env(text)
    if text.startswith("file:") and not text.startswith("file://"):
        rel = text[len("file:") :]
        return os.path.normpath(os.path.join(files_dir, rel.lstrip("/")))
    return text


def preprocess(
    cmd: Command, files_dir: str, value: Callable[[str, str], str] | None = None
) -> None:
    """Preprocess ``cmd``'s string and list arguments in place (not its subcommand)."""
    fn = value or preprocess_value
    for key, val in cmd.string_args.items():
        cmd.string_args[key] = fn(val, files_dir)
    for key, vals in cmd.list_args.items():
        cmd.list_args[key] = [fn(v, files_dir) for v in vals]


async def preprocess_and_fetch(
    cmd: Command, files: Files, bus: Bus | None, frequency: float
) -> None:
    """:func:`preprocess`, fetching what ``file:``, ``tar:`` and URLs name first.

    A download reports its progress as status updates (topic ``download``).

    Raises:
        CommandError: a file is nowhere in the cluster, a transfer or download
            failed, or a tarball is not one directory.
    """
    reports: list[Progress] = []

    def report(url: str) -> Callable[[int, int | None], None]:
        p = Progress(bus, files.node, "download", frequency)
        p.start()
        reports.append(p)

        def update(done: int, total: int | None) -> None:
            mb = done / (1 << 20)
            if total:
                p.update(f"downloading {url}: {mb:.1f}/{total / (1 << 20):.1f} MB", done / total)
            else:
                p.update(f"downloading {url}: {mb:.1f} MB")

        return update

    async def value(text: str) -> str:
        text = expand_env(text)
        if text.startswith("file:") and not text.startswith("file://"):
            return await files.fetch(text[len("file:") :])
        if text.startswith("tar:"):
            name = text[len("tar:") :]
            local = name if os.path.isabs(name) else await files.fetch(name)
            return await files.web.untar(local)
        if text.startswith(("http://", "https://")):
            return await files.web.download(text, report(text))
        return text

    try:
        await _each(cmd, value)
    finally:
        for p in reports:
            await p.finish()


async def _each(cmd: Command, fn: Callable[[str], Awaitable[str]]) -> None:
    for key, val in list(cmd.string_args.items()):
        cmd.string_args[key] = await fn(val)
    for key, vals in list(cmd.list_args.items()):
        cmd.list_args[key] = [await fn(v) for v in vals]
