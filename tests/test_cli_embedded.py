"""The README's first command: a node with its own NATS server, then `megabus -e`.

Runs `megabus node` as a user would, with no NATS URL, so the node starts the
embedded nats-server; the one-shot client finds the node through the base
directory alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

from megabuscmd import MEGABUS
from megabuscmd import megabus as run
from natsd import free_port


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def start_node(
    base: Path, name: str, *flags: str, session: bool = False
) -> asyncio.subprocess.Process:
    """``megabus node`` as the README starts it (no MEGABUS_* settings), up once
    ``megabus.json`` is written; stderr is piped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEGABUS_")}
    node = await asyncio.create_subprocess_exec(
        MEGABUS, "node", "-name", name, "-base", str(base), *flags,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
        start_new_session=session,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            while not (base / "megabus.json").exists():
                assert node.returncode is None, "the node exited during start-up"
                await asyncio.sleep(0.1)
    except BaseException:
        node.kill()
        await node.wait()
        raise
    return node


async def test_a_node_with_an_embedded_server_serves_one_shot_commands(tmp_path: Path) -> None:
    base = tmp_path / "base"
    port = free_port()
    node = await start_node(base, "solo", "-nats-port", str(port))
    info = base / "megabus.json"
    try:
        assert json.loads(info.read_text())["nats_url"].endswith(f":{port}")
        assert listening(port)
        # an idle node maps none of the libraries it needs only on demand (issue
        # 16's idle memory): numpy for screens, aiohttp (nats-py's websockets)
        maps = await asyncio.to_thread(Path(f"/proc/{node.pid}/maps").read_text)
        assert "/numpy/" not in maps
        assert "/aiohttp/" not in maps

        rc, out, err = await run("-base", str(base), "-e", "vlans", "add", "web", "200")
        assert (rc, out, err) == (0, "", "")
        rc, out, err = await run("-base", str(base), "-e", ".annotate", "false", "vlans")
        assert (rc, err) == (0, "")
        assert out == "alias | vlan\nweb   | 200\n"
        rc, out, err = await run("-base", str(base), "-e", "vlans", "add", "web", "201")
        assert (rc, out, err) == (1, "", "Error (solo): alias already in use\n")
    finally:
        node.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await node.wait()
    assert node.returncode == 0
    assert not info.exists()
    assert not listening(port)  # the embedded server went with the node


async def test_a_node_logs_each_record_once(tmp_path: Path) -> None:
    # -level info with the default -v: every record on stderr exactly once
    base = tmp_path / "base"
    node = await start_node(base, "chatty", "-nats-port", str(free_port()), "-level", "info")
    try:
        rc, _out, err = await run("-base", str(base), "-e", "vlans", "add", "web", "200")
        assert (rc, err) == (0, "")
    finally:
        node.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, log = await node.communicate()
    lines = log.decode().splitlines()
    added = [line for line in lines if "adding VLAN alias minimega//web => 200" in line]
    assert len(added) == 1, lines
    assert " INFO megabus.handlers.net._vlanstore: adding VLAN alias" in added[0]


async def test_ctrl_c_stops_a_node_and_its_server_quietly(tmp_path: Path) -> None:
    # ^C in a terminal signals the node and its embedded nats-server at once: the
    # server may be gone before the node closes its connection (uvloop then raised
    # RuntimeError out of the close and the node died with a traceback)
    base = tmp_path / "base"
    node = await start_node(base, "ctrlc", "-nats-port", str(free_port()), session=True)
    os.killpg(node.pid, signal.SIGINT)
    async with asyncio.timeout(30):
        _, log = await node.communicate()
    assert "Traceback" not in log.decode(), log.decode()
    assert node.returncode == 0


async def test_the_node_imports_no_library_it_needs_only_on_demand() -> None:
    # numpy and Pillow (screens), httpx (downloads), pyroute2 (netlink): 35 MB
    # that an idle node used to hold
    code = (
        "import sys, megabus.handlers.main\n"
        "print(sorted(m for m in ('numpy', 'PIL', 'httpx', 'pyroute2') if m in sys.modules))"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert out.decode().strip() == "[]"
