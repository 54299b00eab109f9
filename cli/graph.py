"""Topology pictures drawn by graphviz (``megabus viz``, the web page).

graphviz's ``dot`` program draws it (Debian's ``graphviz``); the text is
:func:`megabus.handlers.model.topology.picture`: the nodes and edges of the
dot text ``viz <file>`` writes, with hosts, routers and VLANs set apart.
"""

from __future__ import annotations

import asyncio
import shutil
import sys

from megabus.cli.args import Target, UsageError

#: Seconds graphviz may take for one picture.
RENDER_TIMEOUT = 30.0
FORMATS = ("svg", "png")


class GraphError(Exception):
    """graphviz is missing or refused the graph."""


async def render(dot_text: str, fmt: str = "svg") -> bytes:
    """The picture of ``dot_text`` in ``fmt`` (svg or png)."""
    if fmt not in FORMATS:
        raise GraphError(f"unknown picture format {fmt!r}: choose svg or png")
    exe = shutil.which("dot")
    if exe is None:
        raise GraphError("graphviz's dot is not installed (ops/setup.sh installs graphviz)")
    proc = await asyncio.create_subprocess_exec(
        exe, f"-T{fmt}",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(dot_text.encode()), RENDER_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise GraphError(f"dot took more than {RENDER_TIMEOUT:g}s") from None
    if proc.returncode != 0:
        raise GraphError(f"dot: {err.decode(errors='replace').strip()}")
    return out


async def _viz(target: Target, fmt: str) -> int | bytes:
    from megabus.bus.connection import Bus
    from megabus.bus.errors import BusError, SecurityError
    from megabus.handlers.model import topology

    try:
        bus = await Bus.connect(
            target.urls, name="megabus-viz", prefix=target.prefix, timeout=target.timeout,
            credentials=target.credentials, tls=target.tls,
        )  # fmt: skip
    except (BusError, SecurityError) as err:
        sys.stderr.write(f"megabus: {err}\n")
        return 2
    try:
        replies = await bus.command(
            target.node, "vm info", namespace=target.namespace, idle_timeout=target.timeout
        )
    except BusError as err:
        sys.stderr.write(f"megabus: {err}\n")
        return 2
    finally:
        await bus.close()
    vms = [
        topology.from_data(r.host, item)
        for rep in replies
        for r in rep.responses
        if not r.error
        for item in (r.data or [])
    ]
    vms.sort(key=lambda v: (v.host, v.id))
    try:
        picture = await render(topology.picture(vms), fmt)
    except GraphError as err:
        sys.stderr.write(f"megabus: {err}\n")
        return 1
    return picture


def run_viz(target: Target, fmt: str, out: str) -> int:
    """``megabus viz``: the namespace's graph as SVG or PNG, to ``out`` or stdout."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown picture format {fmt!r}: choose svg or png")
    picture = asyncio.run(_viz(target, fmt))
    if isinstance(picture, int):
        return picture
    if out and out != "-":
        with open(out, "wb") as f:
            f.write(picture)
    else:
        sys.stdout.buffer.write(picture)
        sys.stdout.flush()
    return 0
