"""Files across the cluster: 2.8's iomeshage on NATS, hashing, web and tar sources.

Public face:

- :class:`Files`: the node's files engine (serving, ``get``/``fetch``,
  ``file status``, the hash index), built from the node's name, files
  directory, ``-headnode`` and ``-hashfiles``, started with the bus;
- :class:`Transfer`: one row of ``file status``;
- the paths of the files directory: :func:`clean_path`,
  :func:`relative_name`, :func:`list_files`, :func:`delete_files`,
  :func:`rfc3339`;
- :class:`WebSources`: ``http(s)://`` downloads and ``tar:`` filesystems;
- :func:`fetch_vm_files`: what ``vm launch`` fetches first;
- :data:`PART_SIZE`, :func:`digest_file` (murmur3-64, 2.8's hash).
"""

from megabus.handlers.files._engine import Files, PartProgress, Transfer
from megabus.handlers.files._hash import PART_SIZE, Digest, digest_file
from megabus.handlers.files._paths import (
    clean_path,
    delete_files,
    list_files,
    relative_name,
    rfc3339,
)
from megabus.handlers.files._vmfiles import fetch_vm_files
from megabus.handlers.files._web import DownloadProgress, WebSources

__all__ = [
    "PART_SIZE",
    "Digest",
    "DownloadProgress",
    "Files",
    "PartProgress",
    "Transfer",
    "WebSources",
    "clean_path",
    "delete_files",
    "digest_file",
    "fetch_vm_files",
    "list_files",
    "relative_name",
    "rfc3339",
]
