"""VNC for real: a TCG guest's screen through its ``vnc_port``, kb and fb recordings, playback.

The guest boots the test image's kernel with a busybox shell on the VGA
console (``rdinit=/bin/sh console=tty0``), so keys that reach it show on the
screen. A plain VNC client (``rfbclient``, written apart from megabus's own)
reads the framebuffer through the shim and types; ``vnc record kb`` catches
what it types in 2.8's format; ``vnc play`` of a recording (ours, or one
written as 2.8 writes them) types into the shell, which the screenshot shows:
``clear`` blanks a screen full of boot messages.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ccworld import guest_image, wait_for
from nodes import MiniNode, node_at
from PIL import Image
from rfbclient import Viewer

from megabus.bus.server import EmbeddedServer
from megabus.handlers.language.render import render

#: A TCG boot and a few playbacks; building the image first may download a kernel.
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def image() -> tuple[Path, Path]:
    return guest_image()


@pytest.fixture
async def vnode(tmp_path: Path) -> AsyncIterator[MiniNode]:
    async with (
        EmbeddedServer(tmp_path / "js", port=0) as server,
        node_at(server.client_url, "vnc", base=tmp_path / "base") as n,
    ):
        n.state.settings.accel = "tcg"
        try:
            yield n
        finally:
            await n.run("clear all")


async def ok(node: MiniNode, line: str) -> str:
    """Run ``line``; it must not fail; its rendered output."""
    batches = await node.run(line)
    assert [r.error for b in batches for r in b if r.error] == [], line
    return "\n".join(render(b, node.state.flags) for b in batches)


#: Lit pixels of a cleared screen are the prompt and the cursor, fewer than this.
PROMPT_PIXELS = 2000


def lit(rgb: bytes) -> int:
    """Pixels whose red is not background in an RGB framebuffer."""
    return sum(1 for v in rgb[::3] if v > 60)


async def cell(node: MiniNode, vm: str, col: str) -> str:
    out = await node.text(f".columns name,{col} .filter name={vm} vm info")
    return out.splitlines()[1].split("|")[1].strip()


async def lit_pixels(node: MiniNode, vm: str, shot: Path) -> int:
    """Pixels that are not background in the VM's screenshot (QMP, not VNC)."""
    assert await node.errors(f"vm screenshot {vm} file {shot}") == []
    img = Image.open(shot).convert("L")
    return sum(1 for p in img.getdata() if p > 60)


async def boot_shell(node: MiniNode, image: tuple[Path, Path], vm: str, tmp: Path) -> None:
    """Launch and start a guest whose VGA console runs a shell; wait until boot output stops."""
    kernel, initrd = image
    for line in (
        f"vm config kernel {kernel}",
        f"vm config initrd {initrd}",
        "vm config append console=tty0 rdinit=/bin/sh",
        "vm config memory 256",
        f"vm launch kvm {vm}",
        f"vm start {vm}",
    ):
        assert await node.errors(line) == [], line
    counts: list[int] = []

    async def settled() -> bool:
        counts.append(await lit_pixels(node, vm, tmp / "boot.png"))
        await asyncio.sleep(1)
        # the cursor blinks: settled is a few reads within a cursor's worth of pixels
        last = counts[-3:]
        return len(counts) > 3 and min(last) > PROMPT_PIXELS and max(last) - min(last) < 300

    await wait_for(settled, "the guest's boot messages to stop", limit=120)


async def test_framebuffer_through_vnc_port(
    vnode: MiniNode, image: tuple[Path, Path], tmp_path: Path
) -> None:
    await boot_shell(vnode, image, "vm0", tmp_path)
    port = int(await cell(vnode, "vm0", "vnc_port"))
    assert port > 0
    viewer = await Viewer.connect(port)
    try:
        assert (viewer.width, viewer.height) == (720, 400)
        fb = await viewer.framebuffer()
        assert len(fb) == 720 * 400 * 3
        assert lit(fb) > PROMPT_PIXELS  # boot text is on the screen
        # type through the shim: the shell clears the screen
        await viewer.type("clear\n")

        async def blank() -> bool:
            return lit(await viewer.framebuffer()) < PROMPT_PIXELS

        await wait_for(blank, "the screen to clear", limit=30)
    finally:
        await viewer.close()


async def fill_screen(node: MiniNode, viewer: Viewer, shot: Path) -> None:
    """Print the kernel log so the screen is full of text again.

    Keys typed while the shell finishes a command and sets its line editor up
    again can be flushed by the guest's tty, so the command is typed again
    until the screen fills.
    """

    async def full() -> bool:
        return await lit_pixels(node, "vm0", shot) > 10 * PROMPT_PIXELS

    for _ in range(5):
        await viewer.type("dmesg\n")
        try:
            await wait_for(full, "the screen to fill", limit=6)
            break
        except AssertionError:
            continue
    else:
        raise AssertionError("the typed dmesg never showed")
    # then the prompt: the screen stops changing but for the cursor
    counts: list[int] = []

    async def settled() -> bool:
        counts.append(await lit_pixels(node, "vm0", shot))
        await asyncio.sleep(0.5)
        return len(counts) > 2 and max(counts[-3:]) - min(counts[-3:]) < 300

    await wait_for(settled, "the prompt after dmesg")


async def cleared(node: MiniNode, shot: Path) -> bool:
    return await lit_pixels(node, "vm0", shot) < PROMPT_PIXELS


KB_LINE = re.compile(r"(\d+):(KeyEvent,(true|false),\w+|PointerEvent,\d+,\d+,\d+)")


async def test_kb_recording_replays_into_the_console(
    vnode: MiniNode, image: tuple[Path, Path], tmp_path: Path
) -> None:
    await boot_shell(vnode, image, "vm0", tmp_path)
    shot = tmp_path / "shot.png"
    rec = tmp_path / "vm0.kb"
    port = int(await cell(vnode, "vm0", "vnc_port"))
    viewer = await Viewer.connect(port)
    try:
        await ok(vnode, f"vnc record kb vm0 {rec}")
        await viewer.pointer(0, 10, 20)
        await viewer.type("clear\n")
        await wait_for(lambda: cleared(vnode, shot), "the typed clear", limit=30)
        await ok(vnode, "vnc stop kb vm0")
        assert await vnode.text("vnc") == ""

        lines = rec.read_text().splitlines()
        assert all(KB_LINE.fullmatch(line) for line in lines), lines
        events = [line.split(":", 1)[1] for line in lines]
        keys = ["c", "l", "e", "a", "r", "Return"]
        assert events == ["PointerEvent,0,10,20"] + [
            f"KeyEvent,{d},{k}" for k in keys for d in ("true", "false")
        ]

        # the screen full again, then the recording typed by megabus clears it
        await fill_screen(vnode, viewer, shot)
        await ok(vnode, f"vnc play vm0 {rec}")
        await wait_for(lambda: cleared(vnode, shot), "the replayed clear", limit=30)

        async def done() -> bool:
            return await vnode.text("vnc") == ""

        await wait_for(done, "the playback to end")
    finally:
        await viewer.close()


def template_b64(shot: Path, box: tuple[int, int, int, int]) -> str:
    """A crop of a screenshot as 2.8 takes WaitForIt templates: a base64 PNG."""
    out = io.BytesIO()
    Image.open(shot).convert("RGB").crop(box).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def clear_lines(delay: str = "50ms") -> list[str]:
    """``clear`` + Return as 2.8 writes a kb recording (Go durations allowed)."""
    out = []
    for key in ("c", "l", "e", "a", "r", "Return"):
        out += [f"{delay}:KeyEvent,true,{key}", f"{delay}:KeyEvent,false,{key}"]
    return out


async def test_playback_of_a_28_file_with_wait_for_it_and_controls(
    vnode: MiniNode, image: tuple[Path, Path], tmp_path: Path
) -> None:
    await boot_shell(vnode, image, "vm0", tmp_path)
    shot = tmp_path / "shot.png"
    viewer = await Viewer.connect(int(await cell(vnode, "vm0", "vnc_port")))
    try:
        # a template that is on the screen now (the busybox banner's first line)
        assert await vnode.errors(f"vm screenshot vm0 file {shot}") == []
        here = template_b64(shot, (0, 320, 200, 340))
        # a template that is nowhere on a text screen: a checkerboard
        board = Image.new("RGB", (40, 40))
        board.putdata([(255, 0, 255) if (x // 4 + y // 4) % 2 else (0, 255, 0)
                       for y in range(40) for x in range(40)])  # fmt: skip
        buf = io.BytesIO()
        board.save(buf, "PNG")
        absent = base64.b64encode(buf.getvalue()).decode()

        missing = tmp_path / "missing.kb"
        missing.write_text("\n".join([f"0:WaitForIt,2s,{absent}", *clear_lines()]) + "\n")
        await ok(vnode, f"vnc play vm0 {missing}")

        async def ended() -> bool:
            return await vnode.text("vnc") == ""

        await wait_for(ended, "the playback to give up", limit=30)
        assert not await cleared(vnode, shot)  # nothing was typed after the timeout

        # 2.8's file: comments, a LoadFile of a relative file, WaitForIt on what is there
        (tmp_path / "keys.kb").write_text("\n".join(clear_lines()) + "\n")
        found = tmp_path / "found.kb"
        found.write_text(
            "#: wait for the banner, then clear the screen\n"
            f"0:WaitForIt,20s,{here}\n"
            "10ms:LoadFile,keys.kb\n"
        )
        await ok(vnode, f"vnc play vm0 {found}")
        await wait_for(lambda: cleared(vnode, shot), "the clear after WaitForIt", limit=60)
        await wait_for(ended, "the playback to end", limit=30)

        # pause, getstep, step, continue on a slow file
        await fill_screen(vnode, viewer, shot)
        slow = tmp_path / "slow.kb"
        slow.write_text("\n".join(["1h:KeyEvent,true,c", *clear_lines()[1:]]) + "\n")
        await ok(vnode, f"vnc play vm0 {slow}")
        rows = (await ok(vnode, ".columns name,type,filename vnc")).splitlines()
        assert rows[1].split("|")[1].strip() == "playback kb"
        assert rows[1].split("|")[2].strip() == str(slow)
        assert "remaining" in await ok(vnode, ".columns time vnc")
        await ok(vnode, "vnc pause vm0")
        assert (await ok(vnode, ".columns time vnc")).splitlines()[1].strip() == "PAUSED"
        assert await vnode.errors("vnc pause vm0") == ["playback not pauseable"]
        assert await vnode.errors("vnc step vm0") == ["playback not stepable"]

        async def stepped() -> bool:
            step = await ok(vnode, "vnc getstep vm0")
            assert step.splitlines()[0].split("|")[0].strip() == "name"
            return step.splitlines()[1].split("|")[1].strip() == "1h:KeyEvent,true,c"

        await wait_for(stepped, "the playback to reach its first line")
        await ok(vnode, "vnc continue vm0")
        assert await vnode.errors("vnc continue vm0") == ["playback not playable"]
        await ok(vnode, "vnc step vm0")  # skips the hour
        await wait_for(lambda: cleared(vnode, shot), "the stepped clear", limit=30)
        await wait_for(ended, "the playback to end", limit=30)

        # inject with no playback goes straight to the VM
        await fill_screen(vnode, viewer, shot)
        for event in [e.split(":", 1)[1] for e in clear_lines()]:
            await ok(vnode, f"vnc inject vm0 {event}")
        await wait_for(lambda: cleared(vnode, shot), "the injected clear", limit=30)
    finally:
        await viewer.close()


async def test_fb_recording_holds_frames(
    vnode: MiniNode, image: tuple[Path, Path], tmp_path: Path
) -> None:
    await boot_shell(vnode, image, "vm0", tmp_path)
    rec = tmp_path / "vm0.fb"
    await ok(vnode, f"vnc record fb vm0 {rec}")
    assert await vnode.errors(f"vnc record fb vm0 {rec}") == [
        "fb recording for vm0 already running"
    ]
    row = (await ok(vnode, ".columns name,type,filename vnc")).splitlines()[1]
    assert [c.strip() for c in row.split("|")] == ["vm0", "record fb", str(rec)]
    await asyncio.sleep(2)
    await ok(vnode, "vnc stop fb vm0")
    assert await vnode.errors("vnc stop fb vm0") == ["fb recording vm0 not found"]

    # 2.8's format: gzip of "<ns> <length>\r\n<server bytes>\r\n" chunks
    data = gzip.decompress(rec.read_bytes())
    stream = bytearray()
    pos = 0
    while pos < len(data):
        end = data.index(b"\r\n", pos)
        offset, length = (int(v) for v in data[pos:end].split(b" "))
        assert offset >= 0
        body = data[end + 2 : end + 2 + length]
        assert len(body) == length
        assert data[end + 2 + length : end + 4 + length] == b"\r\n"
        stream += body
        pos = end + 4 + length
    # frames: FramebufferUpdate messages, each one raw 720x400 rectangle
    frame = 4 + 12 + 720 * 400 * 4
    assert stream[0] == 0
    assert stream[4:16] == bytes.fromhex("0000 0000 02d0 0190 00000000")
    assert len(stream) >= 2 * frame  # 2.8 asks ten a second; a loaded host gives fewer


async def test_bad_input_gets_clear_errors(vnode: MiniNode, tmp_path: Path) -> None:
    vnode.state.settings.accel = "auto"  # a diskless guest: no kernel to boot
    await ok(vnode, "vm launch kvm vm0")
    missing = tmp_path / "missing.kb"
    assert await vnode.errors(f"vnc play vm0 {missing}") == [
        f"open {missing}: no such file or directory"
    ]
    corrupt = tmp_path / "corrupt.kb"
    corrupt.write_bytes(gzip.compress(b"\x00\x01 not a recording"))
    assert await vnode.errors(f"vnc play vm0 {corrupt}") == [
        f"{corrupt}: not a vnc kb recording (binary data)"
    ]
    bad = tmp_path / "bad.kb"
    bad.write_text("soon:KeyEvent,true,a\n")
    assert await vnode.errors(f"vnc play vm0 {bad}") == [
        f"{bad}: invalid vnc line: `soon:KeyEvent,true,a`"
    ]
    assert await vnode.errors(f"vnc play vm0 {tmp_path}") == [f"open {tmp_path}: is a directory"]
    assert await vnode.text("vnc") == ""

    for action in ("stop", "pause", "continue", "step", "getstep"):
        assert await vnode.errors(f"vnc {action} vm0") == ["kb playback not found for vm0"]
    assert await vnode.errors("vnc stop kb vm0") == ["kb recording vm0 not found"]
    assert await vnode.errors("vnc record kb vm9 x.kb") == ["vm not found: vm9"]
    nowhere = tmp_path / "no" / "such" / "dir.kb"
    assert await vnode.errors(f"vnc record kb vm0 {nowhere}") == [
        f"open {nowhere}: no such file or directory"
    ]
    assert await vnode.errors("vnc inject vm0 Hello") == ["invalid event specified"]
    assert await vnode.errors("vnc inject vm0 KeyEvent,maybe,a") == [
        'invalid KeyEvent: strconv.ParseBool: parsing "maybe": invalid syntax'
    ]
    assert await vnode.errors("vnc inject vm0 KeyEvent,true,nokey") == ["unknown key: `nokey`"]
    assert await vnode.errors("vnc inject vm0 PointerEvent,1,2") == [
        "expected 3 values for PointerEvent, got 2"
    ]
    assert await vnode.errors("vnc inject vm0 WaitForIt,1s,notbase64") == [
        "open notbase64: no such file or directory"
    ]

    # a relative name lands in the files directory; the node still serves
    await ok(vnode, "vnc record kb vm0 rel.kb")
    files = Path(vnode.state.settings.files_dir)
    row = (await ok(vnode, ".columns filename vnc")).splitlines()[1].strip()
    assert row == str(files / "rel.kb")
    await ok(vnode, "clear vnc")
    assert await vnode.text("vnc") == ""
    assert (files / "rel.kb").exists()


async def test_clear_namespace_ends_its_recordings(vnode: MiniNode, tmp_path: Path) -> None:
    vnode.state.settings.accel = "auto"
    await ok(vnode, "namespace lab vm launch kvm vm0")
    await ok(vnode, f"namespace lab vnc record kb vm0 {tmp_path / 'lab.kb'}")
    await ok(vnode, "vm launch kvm vm0")
    await ok(vnode, f"vnc record kb vm0 {tmp_path / 'main.kb'}")
    await ok(vnode, "clear namespace lab")
    assert await vnode.text("namespace lab vnc") == ""
    assert "main.kb" in await ok(vnode, "vnc")
