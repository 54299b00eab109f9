"""A minitest equivalent: run minimega 2.8's test scripts against a real node.

For each script ``X`` in the compat folder it runs ``prolog`` (output
dropped), then ``X`` line by line exactly as 2.8's ``cmd/minitest`` records
it, then ``epilog`` (dropped), and compares the result with ``X.want`` byte
for byte:

* a non-empty line is echoed as ``## <line>`` (verbatim, comments too), an
  empty line as an empty line;
* the line goes unchanged to the node as one command (empty ones are not sent);
* each reply batch adds its errors as sorted ``E: <error>`` lines, then its
  rendered text plus a newline when that is not empty.

The node runs in this process (``megabus.handlers.node.Node``) with base
``/tmp/minimega``, since the expected outputs print ``/tmp/minimega/files``
paths, on a real nats-server. ``$images`` is set in the environment, where
the node's preprocessor reads it.

The scripts are found in ``../shared/compat`` (beside the clone, as on the
developers' machines and in CI) or wherever ``MEGABUS_COMPAT_DIR`` says (for
instance minimega 2.8's own ``tests/`` folder). Tests take the folder from
:func:`require_compat` (the ``compat_dir`` fixture): without it they skip
and say how to point them at it, except in CI (``CI`` set), where they fail.

By hand: ``python tests/compat.py NAME...`` prints what the node gave (the
``.got``) and ``--diff`` shows the difference with ``.want`` instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import fcntl
import os
import re
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import IO

import pytest

from megabus.bus.connection import Bus
from megabus.bus.messages import CommandReply, CommandRequest, ErrorReply
from megabus.bus.server import EmbeddedServer
from megabus.config.settings import Settings, load

REPO = Path(__file__).resolve().parent.parent
#: The shared material laid beside the repository (``../shared``), as on the
#: developers' machines and in CI.
SHARED_DIR = REPO.parent / "shared"
COMPAT_DIR = Path(os.environ.get("MEGABUS_COMPAT_DIR") or SHARED_DIR / "compat")
#: What a test says when the scripts are not there.
COMPAT_HINT = (
    "to run them, point MEGABUS_COMPAT_DIR at minimega 2.8's own tests/ folder "
    "(MEGABUS_COMPAT_DIR=/path/to/minimega/tests)"
)
REFERENCE_DIR = SHARED_DIR / "reference"
#: Where ``$images`` points; an ops script fills it (``minicccfs`` and friends).
#: 2.8's scripts spell the variable in lower case (``$images/minicccfs``).
IMAGES_VAR = "images"
IMAGES_DIR = Path(os.environ.get(IMAGES_VAR) or REPO / "build" / "images")
#: The expected outputs print paths under 2.8's default base.
BASE = "/tmp/minimega"
NODE = "compat"
SPECIAL = ("prolog", "epilog", "enter", "exit")
#: Idle timeout per command; long commands send keep-alives, so this is generous.
IDLE_TIMEOUT = 60.0

_GROUP_LINE = re.compile(r"^([a-z][a-z0-9_-]*):((?:\s+[A-Za-z0-9_.-]+)+)\s*$")


def compat_problem(compat_dir: Path = COMPAT_DIR) -> str:
    """Why the compat scripts cannot be read from ``compat_dir`` ("" when they can)."""
    if not compat_dir.is_dir():
        return f"minimega 2.8's test scripts are not here: no folder {compat_dir}"
    if not (compat_dir / "prolog").is_file():
        return f"minimega 2.8's test scripts are not here: no prolog in {compat_dir}"
    return ""


def require_compat(compat_dir: Path = COMPAT_DIR) -> Path:
    """``compat_dir`` when it holds the scripts; else skip the test, or fail it in CI."""
    problem = compat_problem(compat_dir)
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem} (CI is set: the compat scripts must be there)", pytrace=False)
        pytest.skip(f"{problem}; {COMPAT_HINT}")
    return compat_dir


#: The ``issue: names`` lines of ``../shared/compat/README.md``, for a compat
#: folder without that README: minimega 2.8's own ``tests/`` folder. (There
#: ``vm_config_save.want`` and ``router.want`` are 2.8's older recordings,
#: which the README explains; ``vm_config_save`` fails against them.)
README_GROUPS = {
    "foundation": ["vlans", "vm_config", "read_namespace", "shell", "vm_config_save"],
    "vms": [
        "vm_lifecycle", "namespace", "vm_bad_names", "vm_qmp", "vm_hotplug", "vm_screenshot",
        "vm_migrate", "vm_snapshot", "ns_snapshot", "container_lifecycle",
    ],
    "networks": ["vm_net", "taps_lifecycle", "bridge_trunk", "tap_mirror_vm", "capture"],
    "cc": ["cc_filter", "cc", "vm_lifecycle_cc", "container_volumes"],
    "router": ["router", "router_static"],
    "pipes": ["plumbing_basic"],
    "screens": ["vnc"],
}  # fmt: skip


def script_groups(readme: Path | None = None) -> dict[str, list[str]]:
    """The ``issue: names`` lines of the compat README, in order; without one, README_GROUPS."""
    readme = readme or COMPAT_DIR / "README.md"
    if not readme.exists():
        return {issue: list(names) for issue, names in README_GROUPS.items()}
    text = readme.read_text()
    groups: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = _GROUP_LINE.match(line)
        if m:
            groups[m.group(1)] = m.group(2).split()
    return groups


def script_lines(path: Path) -> list[str]:
    """The lines of a script as Go's ``bufio.Scanner`` yields them (``\\r\\n`` ends too)."""
    lines = path.read_text().split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line starts no new one
    return [line.removesuffix("\r") for line in lines]


def record_batch(reply: CommandReply | ErrorReply) -> str:
    """What minitest writes for one reply batch."""
    if isinstance(reply, ErrorReply):
        errors = [f"E: {reply.error}"]
        rendered = ""
    else:
        errors = sorted(f"E: {r.error}" for r in reply.responses if r.error)
        rendered = reply.rendered
    out = "\n".join(errors) + "\n" if errors else ""
    if rendered:
        out += rendered + "\n"
    return out


async def run_lines(
    bus: Bus, lines: Iterable[str], node: str = NODE, *, want: str | None = None
) -> str:
    """Run ``lines`` on ``node`` and return minitest's record of them.

    With ``want``, stop after the first line whose record departs from it
    (the record so far is then no prefix of ``want``).
    """
    out: list[str] = []
    done = 0  # how much of the record has been checked against ``want``
    subject = bus.subjects.node_cmd(node)
    for line in lines:
        out.append(f"## {line}\n" if line else "\n")
        if not line:
            continue
        stream = bus.request_stream(subject, CommandRequest(line=line), idle_timeout=IDLE_TIMEOUT)
        async with contextlib.aclosing(stream):
            async for item in stream:
                if isinstance(item, CommandReply | ErrorReply):
                    out.append(record_batch(item))
        if want is not None:
            record = "".join(out)
            if not want.startswith(record[done:], done):
                break
            done = len(record)
    return "".join(out)


async def run_script(
    bus: Bus, name: str, compat_dir: Path = COMPAT_DIR, *, stop_at_mismatch: bool = False
) -> str:
    """prolog, script, epilog; returns the script's record (the ``.got``).

    With ``stop_at_mismatch`` the script stops at its first line whose record
    differs from ``NAME.want`` (an expected failure need not run to its end).
    """
    prolog, epilog = compat_dir / "prolog", compat_dir / "epilog"
    want = (compat_dir / f"{name}.want").read_text() if stop_at_mismatch else None
    if prolog.exists():
        await run_lines(bus, script_lines(prolog))
    try:
        return await run_lines(bus, script_lines(compat_dir / name), want=want)
    finally:
        if epilog.exists():
            await run_lines(bus, script_lines(epilog))


def diff(name: str, got: str, want: str) -> str:
    """A unified diff of ``want`` against ``got``, line ends shown."""
    return "".join(
        difflib.unified_diff(
            want.splitlines(keepends=True),
            got.splitlines(keepends=True),
            fromfile=f"{name}.want",
            tofile=f"{name}.got",
        )
    )


@contextlib.asynccontextmanager
async def running_node(
    nats_url: str, *, name: str, base: str | Path, heartbeat: float = 1.0
) -> AsyncIterator[Settings]:
    """A real node in this process on ``nats_url``; yields its settings."""
    from megabus.handlers.main import Node

    settings = load(
        {"name": name, "nats": [nats_url], "base": str(base), "heartbeat": heartbeat},
        environ={},
    )
    node = Node(settings)
    await node.start()
    try:
        yield settings
    finally:
        await node.stop()


@contextlib.asynccontextmanager
async def compat_node(nats_url: str) -> AsyncIterator[Bus]:
    """A node named ``compat`` with base ``/tmp/minimega`` on ``nats_url``; yields a client Bus."""
    os.environ[IMAGES_VAR] = str(IMAGES_DIR)
    await build_images()
    # The scripts' outputs name /tmp/minimega, so every compat node on this
    # machine shares that base: take turns (another test run may be going on).
    lock = await asyncio.to_thread(_lock_base)
    try:
        # A script cut short (an expected failure stops at its first differing
        # line, a killed run never reaches its epilog) leaves cc responses on
        # disk that the next script's `cc response all` would print; each
        # script starts as minitest's did, from a base with none.
        await asyncio.to_thread(
            shutil.rmtree, Path(BASE) / "files" / "miniccc_responses", ignore_errors=True
        )
        async with running_node(nats_url, name=NODE, base=BASE):
            bus = await Bus.connect([nats_url], name="minitest")
            try:
                yield bus
            finally:
                await bus.close()
    finally:
        lock.close()


async def build_images() -> None:
    """Build (or reuse, when current) the images the scripts name.

    ``$images/minicccfs`` (ops/images.py) and ``$images/minirouterfs``
    (ops/router_image.py; the scripts launch router containers only, so not
    its KVM variant).
    """
    for script, *args in (("images.py",), ("router_image.py", "--no-kvm")):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(REPO / "ops" / script), "--dest", str(IMAGES_DIR), *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"ops/{script} failed:\n{out.decode(errors='replace')}")


def _lock_base() -> IO[bytes]:
    """An exclusive lock on the shared base, held until the file is closed."""
    fh = open(f"{BASE}.lock", "wb")  # noqa: SIM115 (held open while the node runs)
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


async def _main(names: list[str], show_diff: bool) -> int:
    status = 0
    with tempfile.TemporaryDirectory(prefix="megabus-compat-") as tmp:
        server = EmbeddedServer(Path(tmp) / "nats", port=0)
        await server.start()
        try:
            async with compat_node(server.client_url) as bus:
                for name in names:
                    got = await run_script(bus, name)
                    want_file = COMPAT_DIR / f"{name}.want"
                    want = want_file.read_text() if want_file.exists() else ""
                    if got != want:
                        status = 1
                    if show_diff:
                        print(diff(name, got, want) or f"{name}: ok")
                    else:
                        sys.stdout.write(got)
        finally:
            await server.stop()
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="+", help="compat scripts, e.g. vlans")
    parser.add_argument("--diff", action="store_true", help="show the diff with .want")
    args = parser.parse_args()
    missing = [n for n in args.names if not (COMPAT_DIR / n).is_file()]
    if missing:
        parser.error(f"no such script in {COMPAT_DIR}: {', '.join(missing)}")
    return asyncio.run(_main(args.names, args.diff))


if __name__ == "__main__":
    sys.exit(main())
