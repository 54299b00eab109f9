"""Disk images: ``disk inject`` without nbd (see :mod:`._inject` for how).

Public face: :func:`inject`, :func:`parse_image` (``<image>[:<partition>]``),
:func:`parse_pairs` (``src:dst``), :func:`partitions` and :class:`Partition`.
"""

from megabus.handlers.disks._inject import inject, parse_image, parse_pairs
from megabus.handlers.disks._partitions import Partition, partitions

__all__ = ["Partition", "inject", "parse_image", "parse_pairs", "partitions"]
