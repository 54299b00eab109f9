"""Responses on disk, laid out as 2.8 lays them out, and read back as 2.8 prints them.

``<files>[/<namespace>]/miniccc_responses/<id>/<uuid>/`` holds ``stdout`` and
``stderr`` (only when not empty), ``exitcode`` (foreground commands) and every
``cc recv`` file under its full guest path. The default namespace
``minimega`` has no subdirectory. Every function here blocks (file I/O): call
them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import PurePosixPath

from megabus.bus.errors import CommandError
from megabus.handlers.model.vm import DEFAULT_NAMESPACE

RESPONSE_DIR = "miniccc_responses"


def base_dir(files_dir: str, namespace: str) -> str:
    """The namespace's file root (2.8's ``path`` + ``subpath``)."""
    if namespace == DEFAULT_NAMESPACE:
        return files_dir
    return os.path.join(files_dir, namespace)


def response_dir(files_dir: str, namespace: str, cmd_id: int | None = None) -> str:
    """``.../miniccc_responses`` or one command's directory in it."""
    path = os.path.join(base_dir(files_dir, namespace), RESPONSE_DIR)
    return path if cmd_id is None else os.path.join(path, str(cmd_id))


def safe_relative(name: str) -> str:
    """``name`` as a relative path with no ``..``; absolute guest paths keep their parts.

    Raises:
        ValueError: the path climbs out (``..``) or is empty.
    """
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("/", ".")]
    if not parts or any(p == ".." for p in parts):
        raise ValueError(f"unsafe path: {name!r}")
    return os.path.join(*parts)


#: Suffix of a file still being written (a response, a ``cc recv`` file): renamed to
#: its name once complete, so a full disk or a crash leaves nothing that looks whole;
#: ``cc responses`` skips such files.
PARTIAL = ".megabus-part"


def write_response(
    files_dir: str,
    namespace: str,
    cmd_id: int,
    uuid: str,
    stdout: str,
    stderr: str,
    exit_code: int | None,
) -> None:
    """File one client's response to one command."""
    path = os.path.join(response_dir(files_dir, namespace, cmd_id), safe_relative(uuid))
    os.makedirs(path, mode=0o770, exist_ok=True)
    if exit_code is not None:
        _write(os.path.join(path, "exitcode"), str(exit_code).encode())
    if stdout:
        _write(os.path.join(path, "stdout"), stdout.encode())
    if stderr:
        _write(os.path.join(path, "stderr"), stderr.encode())


def _write(path: str, data: bytes) -> None:
    part = path + PARTIAL
    try:
        with open(part, "wb") as fh:
            fh.write(data)
        os.chmod(part, 0o660)
        os.replace(part, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise


def recv_path(files_dir: str, namespace: str, cmd_id: int, uuid: str, name: str) -> str:
    """Where a ``cc recv`` file of a client lands (``ValueError`` for an unsafe name)."""
    return os.path.join(
        response_dir(files_dir, namespace, cmd_id), safe_relative(uuid), safe_relative(name)
    )


def _walk(base: str, root: str, raw: bool) -> str:
    """2.8's ``getResponses``: every file under ``base`` in lexical order, ``exitcode`` skipped."""
    out: list[str] = []

    def visit(path: str) -> None:
        if os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                visit(os.path.join(path, name))
            return
        if path.endswith(("exitcode", PARTIAL)):
            return
        with open(path, "rb") as fh:
            data = fh.read().decode(errors="replace")
        if not raw:
            out.append(f"{os.path.relpath(path, root)}:\n")
        out.append(f"{data}\n")

    if not os.path.exists(base):
        raise FileNotFoundError(base)
    visit(base)
    return "".join(out)


def get_responses(files_dir: str, namespace: str, raw: bool) -> str:
    """``cc responses all``: everything, or nothing when there is none yet."""
    root = response_dir(files_dir, namespace)
    try:
        return _walk(root, root, raw)
    except FileNotFoundError:
        return ""


def get_response(files_dir: str, namespace: str, cmd_id: int, raw: bool) -> str:
    """``cc responses <id>``; ``no responses for <id>`` when there is none."""
    root = response_dir(files_dir, namespace)
    try:
        return _walk(os.path.join(root, str(cmd_id)), root, raw)
    except FileNotFoundError:
        raise CommandError(f"no responses for {cmd_id}") from None


def exit_code(files_dir: str, namespace: str, cmd_id: int, uuid: str) -> int:
    """The recorded exit code (``OSError``/``ValueError`` when there is none)."""
    path = os.path.join(response_dir(files_dir, namespace, cmd_id), safe_relative(uuid), "exitcode")
    with open(path) as fh:
        return int(fh.read().strip())


def delete(files_dir: str, namespace: str, cmd_id: int | None = None) -> None:
    """Remove one command's responses, or all of them."""
    shutil.rmtree(response_dir(files_dir, namespace, cmd_id), ignore_errors=True)
