"""X keysym names, as 2.8's kb recordings write them (``KeyEvent,true,Shift_L``).

The names come from python-xlib's copy of X's ``keysymdef.h``. A keysym
with several names is written with the first one its group lists (Go's map
picked one at random, and every name reads back); one without a name is
written ``U+XXXX``, Go's ``%U``.
"""

from __future__ import annotations

import re

from Xlib import XK

#: The keysym groups 2.8's table covers (python-xlib has no ``currency`` group).
_GROUPS = (
    "latin1", "miscellany", "xkb", "latin2", "latin3", "latin4", "greek", "cyrillic",
    "technical", "special", "publishing", "apl", "hebrew", "thai", "korean", "katakana",
    "arabic",
)  # fmt: skip

for _group in _GROUPS:
    XK.load_keysym_group(_group)

#: name -> keysym
BY_NAME: dict[str, int] = {
    k[3:]: v for k, v in vars(XK).items() if k.startswith("XK_") and isinstance(v, int)
}
#: keysym -> its first name
BY_KEYSYM: dict[int, str] = {}
for _name, _sym in BY_NAME.items():
    BY_KEYSYM.setdefault(_sym, _name)

_UNICODE = re.compile(r"U\+([0-9A-Fa-f]+)")


def name(keysym: int) -> str:
    """The name 2.8 writes for ``keysym``."""
    found = BY_KEYSYM.get(keysym)
    return found if found is not None else f"U+{keysym:04X}"


def parse(text: str) -> int:
    """The keysym of a name or ``U+XXXX``; 2.8's ``unknown key`` error otherwise."""
    found = BY_NAME.get(text)
    if found is not None:
        return found
    m = _UNICODE.fullmatch(text)
    if m is not None and int(m.group(1), 16) < 2**32:
        return int(m.group(1), 16)
    raise ValueError(f"unknown key: `{text}`")


def for_char(char: str) -> tuple[str, bool]:
    """The keysym name of a printable ASCII character and whether it needs Shift."""
    code = ord(char)
    if code in (0x9, 0xA, 0xD):
        code += 0xFF00
    elif not 0x20 <= code < 0x7F:
        raise ValueError(f"unknown non-ascii character: {char!r}")
    shifted = char.isupper() or char in '~!@#$%^&*()_+{}|:"<>?'
    return name(code), shifted
