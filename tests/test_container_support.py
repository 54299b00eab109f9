"""Tests of the ``minicccfs`` image builder (``ops/images.py``, the ``minicccfs`` fixture)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from containers import build_images

# -- the image builder ------------------------------------------------------------------


def test_image_has_busybox_an_init_and_a_python_that_runs_in_it(minicccfs: Path) -> None:
    assert os.readlink(minicccfs / "bin" / "sh") == "/bin/busybox"
    init = (minicccfs / "init").read_text()
    assert init.startswith("#!/bin/sh\n")
    assert "ifconfig lo up" in init
    # the interpreter copy works on its own inside the root (chroot: no host paths)
    run = subprocess.run(
        [
            shutil.which("chroot") or "/usr/sbin/chroot",
            str(minicccfs),
            "/usr/bin/python3",
            "-c",
            "import msgspec, megabus.bus.codec, sys; print(sys.version_info[:2])",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/bin:/usr/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(sys.version_info[:2])


def test_image_is_cached_and_megabus_refreshed_when_its_sources_change(tmp_path: Path) -> None:
    dest = tmp_path / "images"
    image = build_images(dest) / "minicccfs"
    base_stamp = (image / ".megabus-base").stat().st_mtime_ns
    busybox_inode = (image / "bin" / "busybox").stat().st_ino
    # a second run changes nothing
    build_images(dest)
    assert (image / ".megabus-base").stat().st_mtime_ns == base_stamp
    assert (image / "bin" / "busybox").stat().st_ino == busybox_inode
    # a stale megabus copy is refreshed in place, the base stays
    (image / ".megabus-code").write_text("stale\n")
    build_images(dest)
    assert (image / ".megabus-code").read_text() != "stale\n"
    assert (image / "bin" / "busybox").stat().st_ino == busybox_inode
