#!/usr/bin/env python3
"""Build ``minicccfs``, the container filesystem minimega's test scripts use.

    .venv/bin/python ops/images.py [--dest DIR] [--force]

It goes to ``$images/minicccfs`` (default ``build/images/minicccfs``) and the
path of the images folder is printed. The root holds Debian's static busybox
with every applet linked, an ``/init`` that does what minimega's
``misc/uminiccc/init`` does (loopback and ``veth*`` up, DHCP, the agent in the
background, a shell on the console), and, when the repository has an agent,
``megabus agent -family unix -parent /cc`` started from it.

The agent is Python and busybox has none, so the image carries a copy of the
interpreter that runs this script (the venv's base Python: executable,
shared libraries found by ``ldd``, the standard library without its tests
and GUI parts) at the same absolute paths, plus ``msgspec`` and the megabus
packages in its ``site-packages``. A copy, not a bind mount of the host's:
the image must work as a plain directory (compat scripts name it, ``vm
config filesystem`` may point at it without snapshot) and a container must
never be able to write into the host's Python. About 90 MB, built once.

Cached: two stamps in the image decide what is rebuilt. The base (busybox,
init, Python) is rebuilt when its inputs change; the megabus copy is
refreshed in place when the sources change. A lock serialises concurrent
builders. Only the standard library is used, so the script runs with any
Python 3.11 that can import msgspec.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO / "build" / "images"
NAME = "minicccfs"
#: Bump when the layout below changes.
LAYOUT = "4"
#: The megabus packages copied (the repository's root folders).
ROOTS = ("bus", "agent", "cli", "config", "handlers", "router")
#: Third-party packages the agent imports.
PACKAGES = ("msgspec",)
#: Standard library parts no agent needs.
STDLIB_SKIP = {
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "site-packages",
    "dist-packages",
    "pydoc_data",
}
BASE_STAMP = ".megabus-base"
CODE_STAMP = ".megabus-code"

INIT = """\
#!/bin/sh
# minicccfs init (megabus): minimega's uminiccc init, with busybox.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/

# megabus mounts these for containers; anything else (a VM, a chroot) may not
[ -e /proc/self ] || mount -t proc proc /proc
[ -e /sys/class ] || mount -t sysfs sysfs /sys
[ -w /tmp ] || mount -t tmpfs tmpfs /tmp

ifconfig lo up
for dev in /sys/class/net/veth* /sys/class/net/eth*; do
    [ -e "$dev" ] || continue
    ifconfig "${dev##*/}" up
    udhcpc -f -S -i "${dev##*/}" -s /etc/udhcpc/default.script >/dev/null 2>&1 &
done
@AGENT@
sh
"""
#: megabus passes the VM's UUID in init's environment (there may be no DMI to read it from).
AGENT_LINE = (
    "megabus agent -family unix -parent /cc ${MEGABUS_UUID:+-uuid $MEGABUS_UUID} "
    ">/megabus-agent.log 2>&1 &\n"
)

UDHCPC_SCRIPT = """\
#!/bin/sh
# udhcpc's hook: configure the lease it got
case "$1" in
deconfig)
    ifconfig "$interface" 0.0.0.0
    ;;
bound|renew)
    ifconfig "$interface" "$ip" ${subnet:+netmask $subnet}
    if [ -n "$router" ]; then
        while route del default gw 0.0.0.0 dev "$interface" 2>/dev/null; do :; done
        for r in $router; do route add default gw "$r" dev "$interface"; done
    fi
    [ -n "$dns" ] && { for d in $dns; do echo "nameserver $d"; done; } >/etc/resolv.conf
    ;;
esac
exit 0
"""

#: ``megabus agent`` goes straight to the agent: the CLI's own imports cost
#: each container start 40 ms of CPU (issue 16: ten containers start at once).
MEGABUS_WRAPPER = """\
#!/bin/sh
if [ "$1" = agent ]; then
    shift
    exec {python} -m megabus.agent "$@"
fi
exec {python} -c 'import sys; from megabus.cli.main import main; sys.exit(main())' "$@"
"""


def log(msg: str) -> None:
    print(f"images.py: {msg}", file=sys.stderr)


# -- inputs and stamps -------------------------------------------------------------------


def busybox() -> Path:
    """Debian's static busybox (package busybox-static)."""
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(p)
        if path.is_file():
            return path
    raise SystemExit("images.py: no busybox (apt-get install busybox-static)")


def python_paths() -> tuple[Path, Path, Path]:
    """The interpreter that runs us (the venv's base), its stdlib and its site-packages."""
    exe = Path(os.path.realpath(sys.executable))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    base_site = Path(
        sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["purelib"]
    )
    return exe, stdlib, base_site


def has_agent() -> bool:
    """Whether the repository has an agent to start (a module in ``agent/``)."""
    return any((REPO / "agent").rglob("*.py"))


def init_text() -> str:
    return INIT.replace("@AGENT@", AGENT_LINE if has_agent() else "# no megabus agent yet\n")


def base_stamp() -> str:
    exe, stdlib, _ = python_paths()
    bb = busybox()
    st = bb.stat()
    parts = [
        LAYOUT,
        f"{bb}:{st.st_size}:{st.st_mtime_ns}",
        f"{exe}:{sys.version}",
        str(stdlib),
        init_text(),
        UDHCPC_SCRIPT,
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def source_files(roots: tuple[str, ...] = ROOTS) -> Iterator[Path]:
    """Every file of the repo's ``roots`` that an image copies (no byte code)."""
    for root in roots:
        for path in sorted((REPO / root).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                yield path


def code_stamp(
    layout: str = LAYOUT, roots: tuple[str, ...] = ROOTS, packages: tuple[str, ...] = PACKAGES
) -> str:
    """What an image's copy of megabus depends on: a change in any of it rebuilds the copy."""
    h = hashlib.sha256(layout.encode())
    for pkg in packages:
        h.update(f"{pkg}={importlib.metadata.version(pkg)}\n".encode())
    for path in source_files(roots):
        h.update(str(path.relative_to(REPO)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def read_stamp(image: Path, name: str) -> str:
    try:
        return (image / name).read_text().strip()
    except OSError:
        return ""


# -- building ----------------------------------------------------------------------------


def inside(root: Path, path: Path | str) -> Path:
    return root / str(path).lstrip("/")


def copy_file(root: Path, src: Path | str) -> None:
    """Copy ``src`` (dereferenced) to the same absolute path inside ``root``."""
    dst = inside(root, src)
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(src), dst)


_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


def shared_libs(binaries: list[Path]) -> set[str]:
    """Every library ``ldd`` resolves for ``binaries`` (missing ones are skipped)."""
    libs: set[str] = set()
    for chunk in range(0, len(binaries), 200):
        args = [str(b) for b in binaries[chunk : chunk + 200]]
        out = subprocess.run(["ldd", *args], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            m = _LDD_LINE.search(line)
            if m:
                libs.add(m.group(1))
    return libs


def install_busybox(root: Path) -> None:
    bb = busybox()
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc/udhcpc", "proc", "sys", "dev", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "root").mkdir(mode=0o700, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(bb, root / "bin" / "busybox")
    applets = subprocess.run(
        [str(bb), "--list-full"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = root / applet
        if link.name == "busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")


def install_etc(root: Path) -> None:
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\ntty:x:5:\n")
    (root / "etc" / "hostname").write_text("minicccfs\n")
    (root / "etc" / "resolv.conf").write_text("")
    script = root / "etc" / "udhcpc" / "default.script"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    init = root / "init"
    init.write_text(init_text())
    init.chmod(0o755)


def install_python(root: Path) -> None:
    exe, stdlib, _ = python_paths()
    copy_file(root, exe)

    def skip(directory: str, names: list[str]) -> set[str]:
        if Path(directory) == stdlib:
            return {n for n in names if n in STDLIB_SKIP or n.startswith("config-")}
        return set()

    shutil.copytree(stdlib, inside(root, stdlib), ignore=skip, symlinks=True, dirs_exist_ok=True)
    binaries = [exe, *sorted(stdlib.joinpath("lib-dynload").glob("*.so"))]
    for lib in sorted(shared_libs(binaries)):
        copy_file(root, lib)
    for name in ("python3", "python"):
        link = root / "usr" / "bin" / name
        if not link.exists() and not link.is_symlink():
            link.symlink_to(exe)


def swap_in(new: Path, target: Path) -> None:
    """Replace the directory ``target`` by ``new`` with two renames.

    Running containers may use the image as their overlay's lower layer: a
    path is then either the old tree or the new one, never missing for long.
    """
    old = target.with_name(f".{target.name}-old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def install_code(root: Path) -> None:
    """The megabus packages and the third-party ones, in the image's site-packages."""
    exe, _, site = python_paths()
    dst_site = inside(root, site)
    dst_site.mkdir(parents=True, exist_ok=True)
    megabus = Path(tempfile.mkdtemp(prefix=".megabus-", dir=dst_site))
    megabus.chmod(0o755)
    for src in source_files():
        dst = megabus / src.relative_to(REPO)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    _compile(megabus, dst_site / "megabus", site)
    swap_in(megabus, dst_site / "megabus")
    for pkg in PACKAGES:
        mod = __import__(pkg)
        src_dir = Path(mod.__file__ or "").parent
        target = dst_site / pkg
        staged = dst_site / f".{pkg}-new-{os.getpid()}"
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(src_dir, staged, ignore=shutil.ignore_patterns("__pycache__"))
        _compile(staged, target, site)
        for so in staged.rglob("*.so"):
            for lib in shared_libs([so]):
                copy_file(root, lib)
        swap_in(staged, target)
    wrapper = root / "usr" / "bin" / "megabus"
    wrapper.write_text(MEGABUS_WRAPPER.format(python=exe))
    wrapper.chmod(0o755)
    (root / CODE_STAMP).write_text(code_stamp() + "\n")


def _compile(staged: Path, final: Path, site: Path) -> None:
    """Byte-compile a copy now, named as it will be seen inside the image.

    Without it every agent compiled megabus and msgspec from source at each
    start (130 of its 170 ms; issue 16's container start to agent connected).
    """
    inside_name = Path(site) / final.name
    if not compileall.compile_dir(str(staged), ddir=str(inside_name), quiet=1):
        raise SystemExit(f"images.py: byte-compiling {final.name} failed")


@contextlib.contextmanager
def locked(dest: Path) -> Iterator[None]:
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".lock", "wb") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def build(dest: Path, force: bool = False) -> Path:
    """Make ``dest/minicccfs`` current; returns its path."""
    image = dest / NAME
    with locked(dest):
        want_base = base_stamp()
        if force or read_stamp(image, BASE_STAMP) != want_base:
            log(f"building {image}")
            tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=dest))
            try:
                tmp.chmod(0o755)
                install_busybox(tmp)
                install_etc(tmp)
                install_python(tmp)
                install_code(tmp)
                (tmp / BASE_STAMP).write_text(want_base + "\n")
                old = dest / f".{NAME}-old-{os.getpid()}"
                if image.exists():
                    image.rename(old)
                tmp.rename(image)
                shutil.rmtree(old, ignore_errors=True)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        elif read_stamp(image, CODE_STAMP) != code_stamp():
            log(f"refreshing megabus in {image}")
            install_code(image)
    return image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dest",
        type=Path,
        default=Path(os.environ.get("images") or DEFAULT_DEST),  # noqa: SIM112 (2.8 spells it so)
        help="images folder (default: $images, else build/images)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if current")
    args = parser.parse_args()
    build(args.dest.resolve(), force=args.force)
    print(args.dest.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
