#!/usr/bin/env python3
"""Build ``megabus-agent.pyz``: the guest agent as one file for any Python >= 3.9 with msgspec.

    .venv/bin/python ops/agent_bundle.py [--out build/megabus-agent.pyz] [--force]

The file is a zipapp (PEP 441) of :mod:`megabus.agent` and
:mod:`megabus.bus.cc_messages`, the two parts a guest needs; nothing else of
megabus comes along (no nats-py, no node). In a guest::

    python3 megabus-agent.pyz -serial /dev/virtio-ports/cc
    python3 megabus-agent.pyz -parent 10.0.0.1 -port 9002

The one dependency, msgspec, stays outside: it is compiled code, so the guest
installs its own (``pip install msgspec``: 0.20 is the last release with
wheels for Python 3.9, and the wire is the same). The bundle carries its own
``megabus/bus/__init__.py`` (the repository's one re-exports the whole bus),
so what a guest imports is exactly what is listed in :func:`members`.

Byte code compiled by the Python running this script rides along as unchecked
hash-based ``.pyc`` files: a guest with the same Python skips compiling (it
counts under TCG), any other one ignores them and compiles the sources.

Cached: the zip's comment holds a hash of its inputs and an unchanged bundle
is not rebuilt; a new one replaces the old with a rename. The path is printed.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import py_compile
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "build" / "megabus-agent.pyz"
#: Bump when the layout below changes.
LAYOUT = "1"
#: A fixed time for every member, so the same sources give the same bytes.
EPOCH = (2020, 1, 1, 0, 0, 0)
SHEBANG = b"#!/usr/bin/env python3\n"

MAIN = '''\
"""megabus-agent.pyz: run the megabus guest agent (flags as miniccc's; -h lists them)."""
import sys

if sys.version_info < (3, 9):
    sys.exit("megabus agent: needs Python 3.9 or later")
try:
    import msgspec  # noqa: F401
except ImportError:
    sys.exit("megabus agent: needs msgspec (pip install msgspec)")
from megabus.agent.__main__ import main

sys.exit(main())
'''

#: Generated package markers: (path in the zip, text).
GENERATED = (
    ("megabus/__init__.py", '"""megabus, as the agent bundle carries it."""\n'),
    ("megabus/agent/__init__.py", '"""The megabus guest agent."""\n'),
    (
        "megabus/bus/__init__.py",
        '"""megabus.bus, as the agent bundle carries it: the cc wire only."""\n',
    ),
)


def members() -> list[tuple[str, Path]]:
    """The repository files in the bundle: (path in the zip, source)."""
    out = [
        (f"megabus/agent/{p.name}", p)
        for p in sorted((REPO / "agent").glob("*.py"))
        if p.name != "__init__.py"
    ]
    out.append(("megabus/bus/cc_messages.py", REPO / "bus" / "cc_messages.py"))
    return out


def stamp() -> str:
    """A hash of everything the bundle is made of (and of the Python its byte code is for)."""
    h = hashlib.sha256(f"{LAYOUT}\n{sys.implementation.cache_tag}\n{MAIN}".encode())
    for name, text in GENERATED:
        h.update(f"{name}\0{text}\0".encode())
    for name, path in members():
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def current(out: Path) -> bool:
    """Whether ``out`` is a bundle of the current sources."""
    try:
        with zipfile.ZipFile(out) as zf:
            return zf.comment.decode() == stamp()
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError):
        return False


def _entries(tmp: Path) -> Iterator[tuple[str, bytes]]:
    yield "__main__.py", MAIN.encode()
    for name, text in GENERATED:
        yield name, text.encode()
    for name, path in members():
        yield name, path.read_bytes()
        pyc = tmp / (name.replace("/", "_") + "c")
        py_compile.compile(
            str(path),
            cfile=str(pyc),
            dfile=name,
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        # zipimport looks for the legacy layout: module.pyc beside module.py
        yield name + "c", pyc.read_bytes()


def build(out: Path, force: bool = False) -> Path:
    """Make ``out`` current; returns it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and current(out):
            return out
        with tempfile.TemporaryDirectory(prefix=".agent-bundle-", dir=out.parent) as tmp:
            staged = Path(tmp) / out.name
            with open(staged, "wb") as fh:
                fh.write(SHEBANG)
                with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
                    for name, data in _entries(Path(tmp)):
                        info = zipfile.ZipInfo(name, EPOCH)
                        info.compress_type = zipfile.ZIP_DEFLATED
                        info.external_attr = 0o644 << 16
                        zf.writestr(info, data)
                    zf.comment = stamp().encode()
            staged.chmod(0o755)
            os.replace(staged, out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the .pyz to write")
    parser.add_argument("--force", action="store_true", help="rebuild even if current")
    args = parser.parse_args()
    print(build(args.out.resolve(), force=args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
