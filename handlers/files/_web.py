"""The preprocessor's sources: ``http(s)://`` downloads and ``tar:`` filesystems.

A URL is served from ``<files>/<url path>`` when it is there, else
downloaded into it (2.8): streamed with httpx into a temporary file (never
the whole body in memory, other commands keep running: the download is
async I/O, the writes go to a thread), with progress reported as it goes,
and renamed into place once complete, so a half download never has the
name. Two commands naming the same URL share one download (2.8's #1475).

``tar:<file>`` unpacks a tarball next to itself once; it must hold exactly
one top-level directory, which becomes the argument (a container
filesystem). tarfile's ``tar`` filter refuses members that would land
outside the target; the unpacking happens in a temporary directory and is
renamed into place, so a later command reuses a complete tree only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tarfile
import tempfile
import urllib.parse
from collections.abc import Callable

from megabus.bus.errors import CommandError
from megabus.handlers.files._paths import TRANSFER_PREFIX, relative_name

#: Told bytes done and bytes in all (``None`` when the server does not say).
DownloadProgress = Callable[[int, int | None], None]
#: Seconds without data before a download fails.
HTTP_TIMEOUT = 30.0


class WebSources:
    """Downloads and unpacked tarballs under one files directory."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._downloads: dict[str, asyncio.Future[str]] = {}
        self._untars: dict[str, asyncio.Future[str]] = {}

    def url_path(self, url: str) -> str:
        """Where ``url`` lives under the files directory.

        Raises:
            CommandError: the URL's path leaves the files directory.
        """
        path = urllib.parse.urlsplit(url).path
        rel = relative_name(self.root, "/" + urllib.parse.unquote(path).lstrip("/"))
        return os.path.join(self.root, rel) if rel else self.root

    async def download(self, url: str, progress: DownloadProgress | None = None) -> str:
        """The local path of ``url``, downloaded first when it is not there.

        Raises:
            CommandError: ``get <url>: ...`` when the download fails.
        """
        local = self.url_path(url)
        if await asyncio.to_thread(os.path.exists, local):
            return local
        running = self._downloads.get(local)
        if running is None:
            running = asyncio.ensure_future(self._download(url, local, progress))
            self._downloads[local] = running
            running.add_done_callback(lambda _f: self._downloads.pop(local, None))
        return await asyncio.shield(running)

    async def _download(self, url: str, local: str, progress: DownloadProgress | None) -> str:
        # httpx (with rich, pygments and click: 9 MB, 55 ms) loads with the first
        # download, not with every node (issue 16's idle memory)
        import httpx

        tmpdir = await asyncio.to_thread(
            tempfile.mkdtemp, prefix=TRANSFER_PREFIX + "http_", dir=self.root
        )
        tmp = os.path.join(tmpdir, "data")
        try:
            f = await asyncio.to_thread(open, tmp, "wb")
            try:
                async with (
                    httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=True) as client,
                    client.stream("GET", url) as resp,
                ):
                    if resp.status_code != httpx.codes.OK:
                        raise CommandError(f"get {url}: {resp.status_code} {resp.reason_phrase}")
                    length = resp.headers.get("content-length", "")
                    total = int(length) if length.isdigit() else None
                    done = 0
                    async for chunk in resp.aiter_bytes(1024 * 1024):
                        await asyncio.to_thread(f.write, chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
            finally:
                await asyncio.to_thread(f.close)
            await asyncio.to_thread(_move_into_place, tmp, local)
        except httpx.HTTPError as err:
            raise CommandError(f"get {url}: {str(err) or type(err).__name__}") from None
        except OSError as err:
            raise CommandError(f"get {url}: {err.strerror or err}") from None
        finally:
            await asyncio.to_thread(shutil.rmtree, tmpdir, True)
        return local

    async def untar(self, tarball: str) -> str:
        """The directory that ``tarball`` (a local path) unpacks to, unpacked once.

        Raises:
            CommandError: the tarball cannot be read or does not hold exactly
                one top-level directory.
        """
        running = self._untars.get(tarball)
        if running is None:
            running = asyncio.ensure_future(asyncio.to_thread(_untar, tarball))
            self._untars[tarball] = running
            running.add_done_callback(lambda _f: self._untars.pop(tarball, None))
        return await asyncio.shield(running)


def _move_into_place(tmp: str, local: str) -> None:
    os.makedirs(os.path.dirname(local), exist_ok=True)
    os.replace(tmp, local)


def _top_dir(tf: tarfile.TarFile, tarball: str) -> str:
    tops = {m.name.lstrip("./").split("/", 1)[0] for m in tf.getmembers()} - {""}
    if len(tops) != 1:
        raise CommandError(f"{tarball}: tar must contain exactly one top-level directory")
    return tops.pop()


def _untar(tarball: str) -> str:
    """Unpack ``tarball`` next to itself unless done before; the top directory (blocking)."""
    parent = os.path.dirname(tarball)
    try:
        with tarfile.open(tarball) as tf:
            top = _top_dir(tf, tarball)
            target = os.path.join(parent, top)
            if os.path.isdir(target):
                return target
            tmp = tempfile.mkdtemp(prefix=TRANSFER_PREFIX + "tar_", dir=parent)
            try:
                tf.extractall(tmp, filter="tar")
                if not os.path.isdir(os.path.join(tmp, top)):
                    raise CommandError(f"{tarball}: {top} is not a directory")
                with contextlib.suppress(FileExistsError):
                    os.rename(os.path.join(tmp, top), target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except (OSError, tarfile.TarError) as err:
        raise CommandError(f"{tarball}: {err}") from None
    return target
