"""Go's ``json.Marshal`` output, byte for byte, for what minimega prints as JSON.

Go sorts map keys, writes no spaces, keeps non-ASCII text as is, and escapes
``<``, ``>``, ``&``, U+2028 and U+2029 (it is HTML-safe by default). Tags,
bridge configs and ``vm qmp`` answers are printed through :func:`go_json`.
"""

from __future__ import annotations

import json
from typing import Any

_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def go_json(value: Any) -> str:
    """Go's ``json.Marshal`` of decoded JSON: compact, sorted keys, HTML-safe."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in _ESCAPES:
        text = text.replace(ch, esc)
    return text


__all__ = ["go_json"]
