"""Interface index -> name: the ``<network>`` of ``router <vm> interface <network> ...``.

Index ``i`` is the i-th interface in ``<sysfs>/class/net`` without ``lo``, in
2.8's ``findEth`` order: by the number that ends the name (``veth2`` before
``veth10``), which is the order of the VM's NICs. For names without a number
the order falls back to the name itself; for fewer than ten NICs either order
is plain sorted order.
"""

from __future__ import annotations

import os
import re

from megabus.router.lines import LineError

_NUMBERED = re.compile(r"^[A-Za-z]*([0-9]+)$")


def _key(name: str) -> tuple[int, int, str]:
    m = _NUMBERED.match(name)
    if m:
        return (0, int(m.group(1)), name)
    return (1, 0, name)


def names(sysfs: str) -> list[str]:
    """The interfaces an index can name, in index order."""
    try:
        found = os.listdir(os.path.join(sysfs, "class", "net"))
    except OSError as err:
        raise LineError(f"cannot list interfaces: {err}") from None
    return sorted((n for n in found if n != "lo"), key=_key)


def resolve(sysfs: str, idx: int | None) -> str:
    """The interface for index ``idx`` (``None``: ``lo``)."""
    if idx is None:
        return "lo"
    have = names(sysfs)
    if idx < len(have):
        return have[idx]
    listed = ", ".join(f"{i}={n}" for i, n in enumerate(have)) or "none"
    raise LineError(f"no such network: index {idx} (this router has {len(have)}: {listed})")
