"""PPM (what QMP ``screendump`` writes) to PNG, with zlib, struct and numpy.

2.8 converts QEMU's binary PPM (``P6``, 8-bit RGB) to PNG and, given a
maximum dimension, shrinks the image so neither side exceeds it while
keeping the aspect ratio. Shrinking here averages the source pixels that
fall into each target pixel (a box filter), which reads well for screens.
"""

from __future__ import annotations

import struct
import zlib

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class PPMError(ValueError):
    """The data is not a binary 8-bit PPM."""


def parse_ppm(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and the RGB bytes of a ``P6`` image."""
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            end = data.find(b"\n", pos)
            pos = len(data) if end < 0 else end + 1
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        if start == pos:
            raise PPMError("truncated ppm header")
        fields.append(data[start:pos])
    pos += 1  # the single whitespace byte before the pixels
    if fields[0] != b"P6":
        raise PPMError(f"unsupported ppm type {fields[0]!r}")
    try:
        width, height, maxval = (int(f) for f in fields[1:])
    except ValueError:
        raise PPMError("bad ppm header") from None
    if maxval != 255 or width <= 0 or height <= 0:
        raise PPMError(f"unsupported ppm {width}x{height} maxval {maxval}")
    pixels = data[pos : pos + width * height * 3]
    if len(pixels) != width * height * 3:
        raise PPMError("truncated ppm pixel data")
    return width, height, pixels


def fit(width: int, height: int, maximum: int) -> tuple[int, int]:
    """The size that keeps the aspect ratio with no side above ``maximum`` (0: as is)."""
    if maximum <= 0 or (width <= maximum and height <= maximum):
        return width, height
    if width >= height:
        return maximum, max(1, round(height * maximum / width))
    return max(1, round(width * maximum / height)), maximum


def shrink(width: int, height: int, pixels: bytes, new_w: int, new_h: int) -> bytes:
    """Box-filter ``pixels`` down to ``new_w`` x ``new_h``.

    Each target pixel is the floor of the mean of the source pixels in its box;
    numpy sums the boxes (``reduceat``), which the web UI's thumbnails need: the
    same loop in Python took most of a screenshot's time.
    """
    import numpy as np  # on first use: 14 MB no idle node needs (issue 16)

    if (new_w, new_h) == (width, height):
        return pixels
    img = np.frombuffer(pixels, np.uint8).reshape(height, width, 3).astype(np.int64)
    ys = np.array([y * height // new_h for y in range(new_h)])
    xs = np.array([x * width // new_w for x in range(new_w)])
    sums = np.add.reduceat(np.add.reduceat(img, ys, axis=0), xs, axis=1)
    counts = np.outer(np.diff(np.append(ys, height)), np.diff(np.append(xs, width)))
    return bytes((sums // counts[:, :, None]).astype(np.uint8).tobytes())


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def encode_png(width: int, height: int, pixels: bytes) -> bytes:
    """An 8-bit RGB PNG (filter 0 on every row)."""
    row_len = width * 3
    raw = b"".join(b"\x00" + pixels[y * row_len : (y + 1) * row_len] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_MAGIC
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def ppm_to_png(data: bytes, maximum: int = 0) -> bytes:
    """2.8's ``ppmToPng``: the PNG of a PPM, shrunk to ``maximum`` when given."""
    width, height, pixels = parse_ppm(data)
    new_w, new_h = fit(width, height, maximum)
    return encode_png(new_w, new_h, shrink(width, height, pixels, new_w, new_h))
