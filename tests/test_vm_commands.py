"""The other KVM commands on a real node with real QEMU: top, screenshot, cdrom, hotplug.

Guests are diskless (they reach "no bootable device"), under KVM. Every
check reads what QEMU itself reports (``query-block``) or the files written.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nodes import MiniNode, node_at, transcript

from megabus.bus.server import EmbeddedServer
from megabus.handlers.vms.screenshot import PPMError, encode_png, fit, ppm_to_png, shrink

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def vmnode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "vmc", base=tmp_path / "base") as n,
    ):
        n.state.vms.next_id = 0
        try:
            yield n
        finally:
            await n.run("clear all")


def rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")] for line in text.splitlines()]


async def qmp(node: MiniNode, vm: str, execute: str) -> object:
    out = await node.text(f"vm qmp {vm} '{json.dumps({'execute': execute})}'")
    return json.loads(out)["return"]


async def block(node: MiniNode, vm: str, device: str) -> dict[str, object]:
    devices = await qmp(node, vm, "query-block")
    assert isinstance(devices, list)
    found = [d for d in devices if d["device"] == device]
    return found[0] if found else {}


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def png_pixels(png: bytes) -> bytes:
    """The raw scanlines of a PNG this module wrote (one IDAT)."""
    pos, data = 8, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        body = png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        if kind == b"IDAT":
            data += body
        pos += 12 + length
    return zlib.decompress(data)


# -- PPM to PNG, without QEMU ----------------------------------------------------------


def test_ppm_to_png_keeps_pixels_and_shrinks_with_aspect() -> None:
    pixels = bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30])
    ppm = b"P6\n# a comment\n2 2\n255\n" + pixels
    png = ppm_to_png(ppm)
    assert png_size(png) == (2, 2)
    assert png_pixels(png) == b"\x00" + pixels[:6] + b"\x00" + pixels[6:]
    assert fit(640, 480, 100) == (100, 75)
    assert fit(480, 640, 100) == (75, 100)
    assert fit(64, 48, 100) == (64, 48)
    assert fit(64, 48, 0) == (64, 48)
    # one averaged pixel
    assert shrink(2, 2, pixels, 1, 1) == bytes([(255 + 0 + 0 + 10) // 4, (255 + 20) // 4, 285 // 4])
    assert png_size(ppm_to_png(ppm, 1)) == (1, 1)
    assert png_size(encode_png(3, 1, bytes(9))) == (3, 1)
    for bad in (b"P3\n1 1\n255\n000", b"P6\n2 2\n255\n" + bytes(3), b"P6\n1 1\n65535\n" + bytes(6)):
        with pytest.raises(PPMError):
            ppm_to_png(bad)


# -- with QEMU ---------------------------------------------------------------------------


async def test_screenshot_writes_a_png_of_the_screen(vmnode: MiniNode, tmp_path: Path) -> None:
    await vmnode.run("vm launch kvm shot")
    errors = await vmnode.errors(f"vm screenshot shot file {tmp_path}/x.png")
    assert errors == ["vm not running: 0"]
    await vmnode.run("vm start shot")
    assert await vmnode.errors(f"vm screenshot shot file {tmp_path}/x.png") == []
    assert png_size((tmp_path / "x.png").read_bytes()) == (640, 480)
    # the default path, a maximum dimension, and the PNG in the response's data
    batches = await vmnode.run("vm screenshot shot 100")
    data = [r.data for b in batches for r in b if r.data]
    default = Path(vmnode.state.settings.base) / "0" / "screenshot.png"
    assert png_size(default.read_bytes()) == (100, 75)
    assert base64.b64decode(data[0]) == default.read_bytes()
    assert await vmnode.errors("vm screenshot shot x") == [
        'strconv.Atoi: parsing "x": invalid syntax'
    ]
    assert await vmnode.errors("vm screenshot nosuch") == ["vm not found: nosuch"]
    # no temporary ppm is left behind
    assert not list(default.parent.glob("*.ppm"))


async def test_cdrom_change_and_eject_reach_qemu(vmnode: MiniNode, tmp_path: Path) -> None:
    iso = tmp_path / "a.iso"
    iso.write_bytes(bytes(2048))
    await vmnode.run("vm launch kvm cd[1-2]")
    assert await vmnode.errors("vm cdrom eject cd1") == ["no cdrom inserted"]
    # several targets: an empty drive is not an error
    assert await vmnode.errors("vm cdrom eject all") == []
    assert await vmnode.errors(f"vm cdrom change cd1 {tmp_path}/none.iso") == [
        f"stat {tmp_path}/none.iso: no such file or directory"
    ]
    assert await vmnode.errors(f"vm cdrom change all {iso}") == []
    for vm in ("cd1", "cd2"):
        inserted = (await block(vmnode, vm, "ide0-cd0"))["inserted"]
        assert isinstance(inserted, dict)
        assert inserted["file"] == str(iso)
    out = await vmnode.text(".columns name,cdrom vm info")
    assert rows(out)[1:] == [["cd1", str(iso)], ["cd2", str(iso)]]
    assert await vmnode.errors("vm cdrom eject cd2") == []
    assert "inserted" not in await block(vmnode, "cd2", "ide0-cd0")
    assert rows(await vmnode.text(".columns name,cdrom .filter name=cd2 vm info"))[1] == ["cd2", ""]


async def test_hotplug_versions_serial_and_errors(vmnode: MiniNode, tmp_path: Path) -> None:
    img = tmp_path / "usb.img"
    img.write_bytes(bytes(1 << 20))
    await vmnode.run("vm launch kvm hp")
    assert await vmnode.errors(f"vm hotplug add hp {img} serial SER123 2.0") == []
    assert await vmnode.errors(f"vm hotplug add hp {img} 3.0") == []
    assert await vmnode.errors(f"vm hotplug add hp {img} 4.0") == ["invalid version: `4.0`"]
    assert rows(await vmnode.text("vm hotplug")) == [
        ["name", "id", "file", "version"],
        ["hp", "0", str(img), "2.0"],
        ["hp", "1", str(img), "3.0"],
    ]
    assert (await block(vmnode, "hp", "hotplug0"))["inserted"]
    assert await vmnode.errors("vm hotplug remove hp x") == ["invalid disk: `x`"]
    assert await vmnode.errors("vm hotplug remove hp 7") == ["no such hotplug device"]
    assert await vmnode.errors("vm hotplug remove hp all") == []
    assert await block(vmnode, "hp", "hotplug0") == {}
    assert await vmnode.errors(f"vm hotplug add hp {tmp_path}/missing.img") == [
        f"stat {tmp_path}/missing.img: no such file or directory"
    ]
    # EHCI has no USB 3.0
    await vmnode.run("vm config usb-use-xhci false")
    await vmnode.run("vm launch kvm old")
    assert await vmnode.errors(f"vm hotplug add old {img} 3.0") == [
        "invalid version: `3.0`. VM configured for EHCI instead of XHCI"
    ]
    assert await vmnode.errors(f"vm hotplug add old {img} 2.0") == []


async def test_top_measures_each_running_guest(vmnode: MiniNode) -> None:
    await vmnode.run("vm launch kvm t[1-2]")
    await vmnode.run("vm start t1")
    out = rows(await vmnode.text("vm top 1"))
    assert out[0] == ["name", "virt", "res", "shr", "cpu", "vcpu", "time", "procs", "rx", "tx"]
    by_name = {r[0]: r for r in out[1:]}
    assert set(by_name) == {"t1", "t2"}
    t1 = by_name["t1"]
    assert int(t1[1]) >= int(t1[2]) > 0  # virt >= res > 0 MB
    assert float(t1[4]) >= 0.0
    assert t1[6].endswith("s")
    assert t1[7] == "1"
    assert await vmnode.errors("vm top x") == ['strconv.Atoi: parsing "x": invalid syntax']
    await vmnode.run("vm kill t2")
    assert [r[0] for r in rows(await vmnode.text("vm top 0"))[1:]] == ["t1"]


async def test_hotplug_screenshot_and_migrate_match_28(vmnode: MiniNode, compat_dir: Path) -> None:
    vmnode.state.settings.filepath = ""
    for name in ("vm_hotplug", "vm_screenshot", "vm_migrate"):
        script = (compat_dir / name).read_text().rstrip("\n")
        assert await transcript(vmnode, script) == (compat_dir / f"{name}.want").read_text()
        await vmnode.run("clear all")
