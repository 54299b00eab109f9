"""2.8's kb playback lines: ``<delta>:<event>`` with events and pseudo-events.

A line is ``<delay>:<event>``; the delay is nanoseconds or a Go duration
(``5m3s``). Events: ``KeyEvent,<down>,<key>``, ``PointerEvent,<mask>,<x>,<y>``,
and the pseudo-events ``LoadFile,<file>`` (play another file, relative to
this one) and ``WaitForIt,<timeout>,<image>`` / ``ClickItEvent,<timeout>,<image>``
(wait until the image, base64 or a file, shows on the screen; ClickIt then
clicks its centre). Comment lines start with ``#`` and are logged; lines
without a colon are skipped. Texts of the errors are 2.8's.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from megabus.handlers.language.gotime import parse_duration
from megabus.handlers.vnc import _keysym
from megabus.handlers.vnc.rfb import Event, KeyEvent, PointerEvent

if TYPE_CHECKING:
    from megabus.handlers.vnc.rfb import Frame

logger = logging.getLogger(__name__)

#: A template image is at most this many pixels (a screen's worth, and then some).
MAX_TEMPLATE_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class LoadFile:
    """Play another file, then go on with this one."""

    file: str


@dataclass(frozen=True)
class WaitForIt:
    """Wait (up to ``timeout_ns``) until ``template`` shows on the screen."""

    source: str
    timeout_ns: int
    click: bool
    template: Frame = field(compare=False, repr=False)


Parsed = Event | LoadFile | WaitForIt


def _bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def _uint(text: str, bits: int) -> int:
    if text.isascii() and text.isdigit():
        value = int(text)
        if value < 2**bits:
            return value
        raise ValueError(f'strconv.ParseUint: parsing "{text}": value out of range')
    raise ValueError(f'strconv.ParseUint: parsing "{text}": invalid syntax')


def parse_delay(text: str) -> int:
    """A delay in nanoseconds: an integer, else a Go duration."""
    if text.lstrip("+-").isdigit():
        return int(text)
    return parse_duration(text)


def _image(arg: str) -> tuple[Frame, str]:
    """A template (RGB) from base64 or a file, and its source for logs."""
    # numpy and Pillow load with the first WaitForIt, not with the node (issue 16)
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    source = arg
    try:
        data = base64.b64decode(arg, validate=True)
        if len(source) > 32:
            source = source[:29] + "..."
    except (binascii.Error, ValueError):
        with open(arg, "rb") as f:
            data = f.read()
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_TEMPLATE_PIXELS:
            raise ValueError(f"image too large: {img.width}x{img.height}")
        rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError("image: unknown format") from err
    return np.asarray(rgb, np.uint8), source


def parse_event(cmd: str) -> Parsed:
    """2.8's ``parseEvent``; raises ValueError with 2.8's text."""
    fields = cmd.split(",")
    kind = fields[0]
    if kind == "KeyEvent":
        if len(fields) != 3:
            raise ValueError(f"expected 2 values for KeyEvent, got {len(fields) - 1}")
        try:
            down = _bool(fields[1])
        except ValueError as err:
            raise ValueError(f"invalid KeyEvent: {err}") from None
        return KeyEvent(down, _keysym.parse(fields[2]))
    if kind == "PointerEvent":
        if len(fields) != 4:
            raise ValueError(f"expected 3 values for PointerEvent, got {len(fields) - 1}")
        try:
            return PointerEvent(_uint(fields[1], 8), _uint(fields[2], 16), _uint(fields[3], 16))
        except ValueError as err:
            raise ValueError(f"invalid PointerEvent: {err}") from None
    if kind == "LoadFile":
        if len(fields) != 2:
            raise ValueError(f"expected 1 values for LoadFile, got {len(fields) - 1}")
        return LoadFile(fields[1])
    if kind in ("WaitForIt", "ClickItEvent"):
        if len(fields) != 3:
            raise ValueError(f"expected 2 values for {kind}, got {len(fields) - 1}")
        try:
            timeout = parse_delay(fields[1])
        except ValueError:
            raise ValueError(
                f'invalid timeout for {kind}: time: invalid duration "{fields[1]}"'
            ) from None
        try:
            template, source = _image(fields[2])
        except OSError as err:
            raise ValueError(f"open {fields[2]}: {(err.strerror or str(err)).lower()}") from None
        return WaitForIt(source, timeout, kind == "ClickItEvent", template)
    raise ValueError("invalid event specified")


def split_line(line: str) -> tuple[str, str] | None:
    """``(delay, event)`` of a line, or None for a blank or malformed one."""
    parts = line.split(":", 1)
    if len(parts) != 2:
        return None
    return parts[0], parts[1]


def total_duration(path: str) -> int:
    """2.8's ``getDuration``: the sum of a file's integer delays (0 if one is not)."""
    total = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = split_line(line.rstrip("\n"))
            if parts is None or parts[0].startswith("#"):
                continue
            try:
                total += int(parts[0])
            except ValueError:
                return 0
    return total


def check_file(path: str) -> None:
    """Refuse a file that is not a kb recording before playing it.

    2.8 starts any file and logs each bad line; a file with no playable line at
    all (a binary, an fb recording, a typo'd path) is refused here instead,
    with the line that shows why.
    """
    if not os.path.isfile(path):
        os.stat(path)  # the OSError that names the problem
        raise IsADirectoryError(21, "is a directory", path)
    seen = 0
    with open(path, "rb") as f:
        head = f.read(1 << 20)
    if b"\x00" in head or head[:2] == b"\x1f\x8b":
        raise ValueError(f"{path}: not a vnc kb recording (binary data)")
    for raw in head.decode(errors="replace").splitlines():
        parts = split_line(raw)
        if parts is None or parts[0].startswith("#"):
            continue
        seen += 1
        try:
            parse_delay(parts[0])
        except ValueError:
            raise ValueError(f"{path}: invalid vnc line: `{raw}`") from None
    if seen == 0 and head.strip() and not head.lstrip().startswith(b"#"):
        raise ValueError(f"{path}: not a vnc kb recording")
