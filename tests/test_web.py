"""The web UI in a real headless browser: Debian's chromium driven by Playwright.

A real node runs in this process on a real nats-server, with diskless KVM
guests (SeaBIOS's "no bootable device" screen) on Open vSwitch taps;
``megabus web`` serves on a free port and logs in like any client. The
browser checks what a user sees: the VM table, a live screenshot, the noVNC
console drawing the guest's screen, a VM launched from another client
showing up, a command typed in the box and its output, the topology graph
with the VLANs. Bad requests (VMs of another namespace, paths outside the
files directory) are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from ccworld import node_state, wait_for
from ovsfix import ovs, unique
from playwright.async_api import Browser, Page, Route, async_playwright
from playwright.async_api import TimeoutError as _PlaywrightTimeout

from megabus.bus.connection import Bus
from megabus.cli.args import Target
from megabus.cli.web import serving

__all__ = ["ovs"]

pytestmark = [pytest.mark.usefixtures("ovs"), pytest.mark.timeout(400)]

NODE = "ccnode"  # ccworld's node
CHROMIUM = "/usr/bin/chromium"
MEGABUS = str(Path(sys.executable).parent / "megabus")
#: Generous bounds for the browser's waits (ms): a loaded CI machine is slow.
WAIT = 60_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("chromium is missing (ops/setup.sh installs it)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


async def run(bus: Bus, line: str, namespace: str = "") -> None:
    replies = await bus.command(NODE, line, namespace=namespace, idle_timeout=30)
    errors = [r.error for rep in replies for r in rep.responses if r.error]
    assert errors == [], line


@contextlib.asynccontextmanager
async def world(nats_url: str, base: Path) -> AsyncIterator[Bus]:
    async with node_state(nats_url, base):
        bus = await Bus.connect([nats_url], name="webtest")
        try:
            yield bus
        finally:
            with contextlib.suppress(Exception):
                await run(bus, "clear all")
            await bus.close()


#: JavaScript: the pixels of noVNC's canvas that are not black.
LIT_CANVAS = """() => {
    const c = document.querySelector('#screen canvas');
    if (!c || !c.width) return 0;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 60) n++;
    return n;
}"""


async def lit_canvas(page: Page) -> int:
    """Pixels of noVNC's canvas that are not black."""
    return int(await page.evaluate(LIT_CANVAS))


async def test_the_page_shows_and_drives_the_cluster(
    nats_url: str, tmp_path: Path, browser: Browser
) -> None:
    br = unique("mbw")
    base = tmp_path / "base"
    async with world(nats_url, base) as bus:
        await run(bus, f"vm config net {br},101 {br},102")
        await run(bus, "vm launch kvm a[0-1]")
        await run(bus, "vm start a0")
        await run(bus, "router a1 interface 0 10.0.0.1/24")
        await run(bus, f"vm config net {br},300", "other")
        await run(bus, "vm launch kvm b0", "other")
        files = base / "files"
        files.mkdir(parents=True, exist_ok=True)
        (files / "notes.txt").write_text("hello from the files directory\n")
        target = Target(NODE, [nats_url])
        async with serving(target, files, port=0) as url:
            page = await browser.new_page()
            await page.goto(url)
            # the table: every VM of every namespace, with state, host and VLANs
            rows = page.locator("#vmlist .row.vm")
            await page.wait_for_function("document.querySelectorAll('#vmlist .row.vm').length == 3",
                                         timeout=WAIT)  # fmt: skip
            a0 = page.locator('.row.vm[data-key="minimega/a0"]')
            assert await a0.get_attribute("data-state") == "RUNNING"
            assert "101" in await a0.locator(".vlan").inner_text()
            assert await rows.count() == 3
            assert NODE in await a0.inner_text()
            # a live screenshot renders
            await page.wait_for_function(
                """() => {
                    const i = document.querySelector('.row.vm[data-key="minimega/a0"] img.shot');
                    return i && i.complete && i.naturalWidth > 0;
                }""",
                timeout=WAIT,
            )
            # a VM launched by another client appears, and its state follows
            await run(bus, "vm launch kvm late")
            await page.wait_for_selector('.row.vm[data-key="minimega/late"]', timeout=WAIT)
            await run(bus, "vm start late")
            await page.wait_for_selector('.row.vm[data-key="minimega/late"][data-state="RUNNING"]',
                                         timeout=WAIT)  # fmt: skip
            # a command typed in the box returns its output
            await page.fill("#cmd", ".columns name,state vm info")
            await page.click("#cmdform button")
            await page.wait_for_function(
                "document.querySelector('#out').dataset.done", timeout=WAIT
            )
            out = await page.inner_text("#out")
            assert "a0" in out
            assert "RUNNING" in out
            await page.fill("#cmd", "vm start nosuchvm")
            await page.click("#cmdform button")
            await page.wait_for_function(
                "document.querySelector('#out').textContent.includes('E: ')", timeout=WAIT
            )
            # the graph shows the VLANs
            await page.wait_for_selector("#graph svg", timeout=WAIT)
            graph = await page.inner_text("#graph")
            for vlan in ("101", "102", "300"):
                assert vlan in graph
            # ... its host as a frame around its VMs, and the router as a box
            assert await page.locator("#graph g.cluster", has_text=NODE).count() == 1
            router = page.locator("#graph g.node", has_text=":a1:")
            assert await router.locator("polygon").count() == 1
            assert (
                await page.locator("#graph g.node", has_text=":a0:").locator("polygon").count() == 0
            )
            # the files directory, downloadable
            link = page.locator("#files a")
            assert "notes.txt" in await link.first.inner_text()

            # the noVNC console connects and draws the guest's screen. Chromium aborts
            # requests when the host's interfaces change (a guest's tap here): the
            # console page then loads itself again, which the trace shows on failure
            console = await browser.new_page()
            trace: list[str] = []
            console.on("console", lambda m: trace.append(f"console {m.type}: {m.text}"))
            console.on("pageerror", lambda e: trace.append(f"pageerror: {e}"))
            console.on("requestfailed", lambda r: trace.append(f"failed: {r.url} {r.failure}"))
            console.on("framenavigated", lambda f: trace.append(f"navigated: {f.url}"))
            # one of noVNC's modules fails once, as a network change makes it fail
            aborted: list[str] = []

            async def fail_once(route: Route) -> None:
                if aborted:
                    await route.continue_()
                else:
                    aborted.append(route.request.url)
                    await route.abort("internetdisconnected")

            await console.route("**/novnc/core/websock.js", fail_once)
            await console.goto(f"{url}console/minimega/a0")
            try:
                await console.wait_for_function(
                    "document.getElementById('status').textContent == 'connected'", timeout=WAIT
                )
            except _PlaywrightTimeout:
                status = await console.inner_text("#status")
                raise AssertionError(f"console {status!r}:\n" + "\n".join(trace[-50:])) from None
            assert aborted, "the module was not asked for"
            assert "try=1" in console.url, console.url
            await console.wait_for_function(f"({LIT_CANVAS})() > 0", timeout=WAIT)
            assert await lit_canvas(console) > 0
            # what is typed in noVNC reaches the kb recorder through the shim
            rec = tmp_path / "novnc.kb"
            await run(bus, f"vnc record kb a0 {rec}")
            await console.click("#screen canvas")
            await console.keyboard.type("ab")

            async def typed() -> bool:
                return rec.read_text().count("KeyEvent") >= 4

            await wait_for(typed, "noVNC's keys in the recording")
            await run(bus, "vnc stop kb a0")
            events = [line.split(":", 1)[1] for line in rec.read_text().splitlines()]
            keys = [e for e in events if e.startswith("KeyEvent")]
            assert keys == [f"KeyEvent,{d},{k}" for k in "ab" for d in ("true", "false")]
            assert any(e.startswith("PointerEvent,1,") for e in events)

            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}files/notes.txt") as r:
                    assert r.status == 200
                    assert await r.text() == "hello from the files directory\n"
                escape = f"{url}files/%2e%2e/%2e%2e/megabus.json"
                async with http.get(aiohttp.client.URL(escape, encoded=True)) as r:
                    assert r.status == 403
                async with http.get(f"{url}api/vm/minimega/ghost/screenshot.png") as r:
                    assert r.status == 404
                async with http.post(f"{url}api/command", data="not json") as r:
                    assert r.status == 400

        # megabus viz: the same graph as a picture, from the command line
        svg = tmp_path / "topo.svg"
        proc = await asyncio.create_subprocess_exec(
            MEGABUS, "-nats", nats_url, "-node", NODE, "-base", str(tmp_path / "nobase"),
            "viz", "-o", str(svg),
        )  # fmt: skip
        assert await proc.wait() == 0
        picture = svg.read_text()
        assert picture.startswith("<?xml")
        assert "ccnode:a0:0" in picture

        # a page for one namespace: the others' VMs are not there
        async with (
            serving(Target(NODE, [nats_url], namespace="other"), files, port=0) as url,
            aiohttp.ClientSession() as http,
        ):
            async with http.get(f"{url}api/vms") as r:
                names = [v["key"] for v in (await r.json())["vms"]]
                assert names == ["other/b0"]
            async with http.get(f"{url}api/vm/minimega/a0/screenshot.png") as r:
                assert r.status == 404
            async with http.get(f"{url}console/minimega/a0") as r:
                assert r.status == 404
            async with http.post(
                f"{url}api/command", json={"line": "namespace minimega vm info"}
            ) as r:
                assert r.status == 403
