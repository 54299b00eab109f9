"""The web UI's HTTP side (aiohttp): the page, its API, the VNC websocket, files.

Routes:

* ``/``: the page (``static/``); ``/novnc/``: Debian's noVNC 1.3;
* ``/ws``: the VM table, then every change, as JSON (see :mod:`._model`);
* ``/api/vm/<ns>/<name>/screenshot.png``: ``vm screenshot`` over the bus;
* ``/ws/vnc/<ns>/<name>``: noVNC's websocket, relayed to the VM's ``vnc_port``;
* ``/api/command``: a command line, run on the node, rendered as ``megabus -e``;
* ``/api/topology.svg``: 2.8's ``viz`` graph drawn by graphviz;
* ``/files/``: the files directory, listed and served (sendfile: a big
  download blocks nothing).

A page started for one namespace (``-namespace``) answers 404 for VMs of
others and refuses command lines that would leave it. Paths outside the
files directory are 403.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from megabus.bus.errors import BusError
from megabus.bus.messages import Flags
from megabus.cli.graph import GraphError, render
from megabus.cli.web._model import Model, WebVM
from megabus.handlers.language.render import render as render_text

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: Debian's noVNC 1.3 (``novnc`` package).
NOVNC = Path("/usr/share/novnc")
#: A screenshot is taken again at most this often per VM (seconds).
SCREENSHOT_TTL = 1.0
#: Bytes per read on the VNC relay.
RELAY_CHUNK = 256 * 1024

MODEL = web.AppKey("model", Model)
FILES = web.AppKey("files", Path)
#: Each browser's queue of messages; past QUEUE_SIZE the browser is too slow and is dropped.
SOCKETS = web.AppKey("sockets", dict[web.WebSocketResponse, asyncio.Queue[str]])
QUEUE_SIZE = 1000
#: Open console relays, closed when the server stops.
RELAYS = web.AppKey("relays", set[web.WebSocketResponse])
SHOTS = web.AppKey("shots", dict[str, tuple[float, bytes]])


def build(model: Model, files: Path) -> web.Application:
    """The application over ``model``, serving ``files``."""
    app = web.Application()
    app[MODEL] = model
    app[FILES] = files
    app[SOCKETS] = {}
    app[SHOTS] = {}
    app[RELAYS] = set()
    app.router.add_get("/", _index)
    app.router.add_get("/ws", _updates)
    app.router.add_get("/api/vms", _vms)
    app.router.add_get("/api/vm/{ns}/{name}/screenshot.png", _screenshot)
    app.router.add_get("/ws/vnc/{ns}/{name}", _vnc)
    app.router.add_get("/console/{ns}/{name}", _console)
    app.router.add_post("/api/command", _command)
    app.router.add_get("/api/topology.svg", _topology)
    app.router.add_get("/files/", _file_list)
    app.router.add_get("/files/{path:.+}", _file)
    app.router.add_static("/static/", STATIC)
    if NOVNC.is_dir():
        app.router.add_static("/novnc/", NOVNC)
    app.on_shutdown.append(_close_sockets)
    model.listeners.append(lambda msg: _broadcast(app, msg))
    return app


def _broadcast(app: web.Application, msg: dict[str, Any]) -> None:
    text = json.dumps(msg)
    for ws, queue in list(app[SOCKETS].items()):
        try:
            queue.put_nowait(text)
        except asyncio.QueueFull:
            # a browser this far behind reloads the table when it reconnects
            app[SOCKETS].pop(ws, None)


async def _close_sockets(app: web.Application) -> None:
    # open websockets would hold the server's shutdown for its whole timeout
    sockets = app[SOCKETS]
    relays = app[RELAYS]
    for ws in [*sockets.keys(), *relays]:
        await ws.close()


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html")


async def _vms(request: web.Request) -> web.Response:
    model = request.app[MODEL]
    return web.json_response({"only": model.only, "vms": [vm.json() for vm in model.all()]})


async def _updates(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    model = request.app[MODEL]
    await ws.send_str(json.dumps({"type": "snapshot", "only": model.only,
                                  "vms": [vm.json() for vm in model.all()]}))  # fmt: skip
    queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
    request.app[SOCKETS][ws] = queue

    async def sender() -> None:
        # a slow browser only delays itself: its messages wait in its own queue
        while True:
            await ws.send_str(await queue.get())

    task = asyncio.create_task(sender(), name="web-updates")
    try:
        async for _msg in ws:
            pass  # the page only listens
    finally:
        request.app[SOCKETS].pop(ws, None)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, RuntimeError):
            await task
    return ws


def _vm(request: web.Request) -> WebVM:
    vm = request.app[MODEL].find(request.match_info["ns"], request.match_info["name"])
    if vm is None:
        raise web.HTTPNotFound(text="vm not found\n")
    return vm


async def _screenshot(request: web.Request) -> web.Response:
    vm = _vm(request)
    size = request.query.get("size", "240")
    if not size.isdigit() or not 0 < int(size) <= 4096:
        raise web.HTTPBadRequest(text=f"invalid size: {size}\n")
    shots = request.app[SHOTS]
    key = f"{vm.key}/{size}"
    cached = shots.get(key)
    if cached is not None and time.monotonic() - cached[0] < SCREENSHOT_TTL:
        return web.Response(body=cached[1], content_type="image/png")
    try:
        resps = await request.app[MODEL].command(f"vm screenshot {vm.name} {size}", vm.namespace)
    except BusError as err:
        raise web.HTTPServiceUnavailable(text=f"{err}\n") from None
    for resp in resps:
        if resp.error:
            continue
        if isinstance(resp.data, str):
            png = base64.b64decode(resp.data)
            shots[key] = (time.monotonic(), png)
            return web.Response(body=png, content_type="image/png",
                                headers={"Cache-Control": "no-store"})  # fmt: skip
    errors = "; ".join(r.error for r in resps if r.error) or "no screenshot"
    raise web.HTTPConflict(text=f"{errors}\n")


async def _console(request: web.Request) -> web.StreamResponse:
    _vm(request)
    return web.FileResponse(STATIC / "console.html")


def _vnc_host(model: Model, host: str) -> str:
    """Where a node's shims listen, as seen from here."""
    if host in (model.node, socket.gethostname(), socket.gethostname().split(".")[0]):
        return "127.0.0.1"
    return host


async def _vnc(request: web.Request) -> web.WebSocketResponse:
    vm = _vm(request)
    if vm.type == "kvm" and not vm.vnc_port:
        # the table was read before the guest's shim listened (launch events
        # come first): read the namespace again before saying it has none
        await request.app[MODEL].refresh(vm.namespace)
        vm = _vm(request)
    if vm.type != "kvm" or not vm.vnc_port:
        raise web.HTTPConflict(text=f"vm {vm.name} has no vnc\n")
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(_vnc_host(request.app[MODEL], vm.host), vm.vnc_port), 10
        )
    except (OSError, TimeoutError) as err:
        raise web.HTTPBadGateway(text=f"vnc of {vm.name}: {err}\n") from None
    ws = web.WebSocketResponse(protocols=("binary",), max_msg_size=0)
    await ws.prepare(request)

    async def down() -> None:
        while data := await reader.read(RELAY_CHUNK):
            await ws.send_bytes(data)
        await ws.close()

    task = asyncio.create_task(down(), name=f"vnc-down:{vm.key}")
    request.app[RELAYS].add(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                writer.write(msg.data)
                await writer.drain()
            elif msg.type == WSMsgType.ERROR:
                break
    except (ConnectionError, OSError):
        pass
    finally:
        request.app[RELAYS].discard(ws)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await task
        writer.close()
    return ws


async def _command(request: web.Request) -> web.Response:
    model = request.app[MODEL]
    try:
        body = await request.json()
        line = str(body["line"]).strip()
    except (ValueError, KeyError, TypeError):
        raise web.HTTPBadRequest(text='want JSON {"line": "..."}\n') from None
    if not line:
        return web.json_response({"output": "", "errors": []})
    words = line.split()
    if model.only and words[0] in ("namespace", "ns", "clear") and "namespace" in words[:2]:
        raise web.HTTPForbidden(text=f"this page is limited to namespace {model.only}\n")
    try:
        resps = await model.command(line, model.only)
    except BusError as err:
        return web.json_response({"output": "", "errors": [str(err)]})
    flags = Flags()
    text = render_text([r for r in resps if not r.error], flags) if resps else ""
    errors = [f"E: {r.error}" for r in resps if r.error]
    return web.json_response({"output": text, "errors": errors})


async def _topology(request: web.Request) -> web.Response:
    try:
        svg = await render(request.app[MODEL].dot(), "svg")
    except GraphError as err:
        raise web.HTTPServiceUnavailable(text=f"{err}\n") from None
    return web.Response(body=svg, content_type="image/svg+xml")


def _inside(request: web.Request, rel: str) -> Path:
    root = request.app[FILES].resolve()
    path = (root / rel).resolve()
    if path != root and root not in path.parents:
        raise web.HTTPForbidden(text="path outside the files directory\n")
    return path


async def _file_list(request: web.Request) -> web.Response:
    root = request.app[FILES]

    def walk() -> list[dict[str, Any]]:
        out = []
        for dirpath, _dirs, names in os.walk(root):
            for name in sorted(names):
                full = Path(dirpath) / name
                with contextlib.suppress(OSError):
                    out.append({"path": str(full.relative_to(root)), "size": full.stat().st_size})
        return out

    return web.json_response(await asyncio.to_thread(walk))


async def _file(request: web.Request) -> web.StreamResponse:
    path = _inside(request, request.match_info["path"])
    if not await asyncio.to_thread(path.is_file):
        raise web.HTTPNotFound(text="no such file\n")
    return web.FileResponse(path)
