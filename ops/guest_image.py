#!/usr/bin/env python3
"""Build ``miniccc.kernel`` and ``miniccc.initrd``: a KVM guest whose init runs the megabus agent.

    .venv/bin/python ops/guest_image.py [--dest DIR] [--force] [--kernel-deb FILE]

Both go to ``$images`` (default ``build/images``), the names 2.8's tests use,
and the images folder is printed. Use them as::

    vm config kernel $images/miniccc.kernel
    vm config initrd $images/miniccc.initrd
    vm config append console=ttyS0

The kernel is Debian's cloud kernel (``linux-image-cloud-amd64``: small,
virtio as modules), fetched with ``apt-get download`` and unpacked with
``dpkg-deb``, never installed. The initramfs (an uncompressed newc cpio:
nothing to inflate under TCG) holds:

* Debian's static busybox with every applet linked;
* the kernel's virtio modules (``virtio_pci``, ``virtio_console``, and
  ``virtio_net``/``virtio_blk`` for NICs and disks), with their dependencies
  read from each module's ``.modinfo``, loaded in order by ``/init``;
* a trimmed copy of the Python running this script at the same absolute
  paths, as ``ops/images.py`` copies it for ``minicccfs``, except that the
  standard library is one uncompressed zip of byte code
  (``<prefix>/lib/python311.zip``, which Python puts on ``sys.path`` by
  itself), the shared libraries are stripped when ``strip`` is there and
  extension modules no agent loads are left out;
* msgspec in that Python's ``site-packages``, and the agent as the one-file
  bundle of ``ops/agent_bundle.py`` behind a ``megabus`` wrapper that knows
  only ``megabus agent``.

``/init`` mounts proc, sys, devtmpfs, loads the modules, makes
``/dev/virtio-ports/<name>`` links (udev's job in a full system), brings up
loopback and DHCP on ``eth*``, and starts
``megabus agent -serial /dev/virtio-ports/cc``. The guest's UUID comes from
DMI (QEMU's ``-uuid``); without DMI, from ``megabus.uuid=`` on the kernel
command line, else a random one (over virtio-serial the node names the VM
by its socket anyway).

Cached: a stamp of every input (kernel package, busybox, Python, init, the
agent bundle, msgspec) decides whether to rebuild; the kernel package stays in
``<dest>/.kernel/``, so a rebuild does not download it again. A lock
serialises concurrent builders; new files replace old ones with renames.
Needs ``apt-get``, ``dpkg-deb``, ``cpio`` and ``busybox-static`` (Debian).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

# sibling scripts: the agent bundle, and minicccfs's busybox and library helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))
import agent_bundle
import images

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO / "build" / "images"
KERNEL = "miniccc.kernel"
INITRD = "miniccc.initrd"
STAMP = ".miniccc.stamp"
#: Bump when the layout below changes.
LAYOUT = "1"
#: The kernel flavour: virtio as modules, about 27 MB as a package.
KERNEL_META = "linux-image-cloud-amd64"
#: Modules wanted in the guest; their dependencies come along.
MODULES = ("virtio_pci", "virtio_console", "virtio_net", "virtio_blk")
MODULE_DIR = "/lib/modules/megabus"
AGENT_PYZ = "/usr/lib/megabus/megabus-agent.pyz"
#: Extension modules an agent never loads (GUI, test, TLS, databases, audio).
DYNLOAD_SKIP = re.compile(
    r"^(_test|_ctypes_test|_tkinter|_curses|readline|_sqlite3|nis|ossaudiodev|xxlimited"
    r"|_xxtestfuzz|_xxsubinterpreters|audioop|_ssl|_hashlib|_dbm|_gdbm|_lzma|_bz2|spwd)"
)
#: Standard library folders left out of the zip (besides ``images.STDLIB_SKIP``).
STDLIB_SKIP = {
    *images.STDLIB_SKIP,
    "lib-dynload",
    "__pycache__",
    "tests",
    "idle_test",
    "distutils",
    "venv",
    "sqlite3",
    "curses",
    "dbm",
}

#: udev's job, done by hand: ``/dev/virtio-ports/<name>`` for every named virtio-serial
#: port (the agent's ``cc`` port among them), once the modules have probed them.
VIRTIO_PORT_LINKS = """\
mkdir -p /dev/virtio-ports
i=0
while [ $i -lt 100 ] && ! ls /sys/class/virtio-ports/*/name >/dev/null 2>&1; do
    sleep 0.1
    i=$((i + 1))
done
for port in /sys/class/virtio-ports/*; do
    [ -r "$port/name" ] || continue
    name=$(cat "$port/name")
    [ -n "$name" ] && ln -sf "/dev/${port##*/}" "/dev/virtio-ports/$name"
done
"""

INIT = (
    """\
#!/bin/sh
# miniccc guest init (megabus): busybox, the virtio modules, the megabus agent.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
hostname -F /etc/hostname

for m in @MODULES@; do
    insmod @MODULE_DIR@/$m.ko || echo "init: insmod $m failed" >/dev/console
done

# udev's job: /dev/virtio-ports/<name> for every named port (they appear as the modules probe)
"""
    + VIRTIO_PORT_LINKS
    + """\

ifconfig lo up
for dev in /sys/class/net/eth*; do
    [ -e "$dev" ] || continue
    ifconfig "${dev##*/}" up
    udhcpc -f -S -i "${dev##*/}" -s /etc/udhcpc/default.script >/dev/null 2>&1 &
done

# the UUID: DMI (QEMU's -uuid), else megabus.uuid= on the command line, else any
uuid=$(cat /sys/class/dmi/id/product_uuid 2>/dev/null)
if [ -z "$uuid" ]; then
    for word in $(cat /proc/cmdline); do
        case "$word" in megabus.uuid=*) uuid="${word#megabus.uuid=}" ;; esac
    done
fi
[ -n "$uuid" ] || uuid=$(cat /proc/sys/kernel/random/uuid)

echo "init: starting megabus agent ($uuid)" >/dev/console
while :; do
    megabus agent -serial /dev/virtio-ports/cc -uuid "$uuid" -logfile /tmp/megabus-agent.log \\
        </dev/null >/dev/console 2>&1
    echo "init: megabus agent exited ($?); restarting" >/dev/console
    sleep 1
done
"""
)

MEGABUS_WRAPPER = """\
#!/bin/sh
# megabus in this guest: only its agent (the one-file bundle)
if [ "$1" != agent ]; then
    echo "megabus: this guest has only 'megabus agent'" >&2
    exit 2
fi
shift
exec {python} {pyz} "$@"
"""


def log(msg: str) -> None:
    print(f"guest_image.py: {msg}", file=sys.stderr)


def run(*argv: str, cwd: Path | None = None) -> str:
    """Run a tool; its stdout (``SystemExit`` with its stderr when it fails)."""
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SystemExit(f"guest_image.py: {argv[0]} not found") from None
    if proc.returncode != 0:
        raise SystemExit(f"guest_image.py: {' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


# -- the kernel package ------------------------------------------------------------------


def kernel_deb(cache: Path, given: Path | None) -> Path:
    """The kernel package: ``given``, else the one cached, else ``apt-get download`` it."""
    if given is not None:
        if not given.is_file():
            raise SystemExit(f"guest_image.py: no such file: {given}")
        return given
    cache.mkdir(parents=True, exist_ok=True)
    cached = sorted(cache.glob("linux-image-*.deb"))
    if cached:
        return cached[-1]
    m = re.search(r"Depends:\s*(linux-image-\S+)", _apt_depends())
    if m is None:
        # a fresh machine may never have fetched the package lists
        log("apt knows no kernel package yet: apt-get update")
        run("apt-get", "update", "-q")
        m = re.search(r"Depends:\s*(linux-image-\S+)", _apt_depends())
    if m is None:
        raise SystemExit(
            f"guest_image.py: apt knows no {KERNEL_META} (run apt-get update, or give --kernel-deb)"
        )
    log(f"downloading {m.group(1)}")
    with tempfile.TemporaryDirectory(prefix=".kernel-", dir=cache) as tmp:
        run("apt-get", "download", "-q", m.group(1), cwd=Path(tmp))
        (deb,) = Path(tmp).glob("*.deb")
        os.chmod(deb, 0o644)
        final = cache / deb.name
        os.replace(deb, final)
    return final


def _apt_depends() -> str:
    proc = subprocess.run(
        ["apt-cache", "depends", KERNEL_META], capture_output=True, text=True, check=False
    )
    return proc.stdout


def module_depends(ko: Path) -> list[str]:
    """The ``depends=`` of a kernel module's ``.modinfo`` (what ``modinfo -F depends`` says)."""
    m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", ko.read_bytes())
    if m is None:
        return []
    return [d.replace("-", "_") for d in m.group(1).decode().split(",") if d]


def module_order(tree: Path, wanted: tuple[str, ...]) -> list[Path]:
    """The modules ``wanted`` and their dependencies, each after what it needs."""
    found: dict[str, Path] = {}
    for ko in tree.rglob("*.ko"):
        found[ko.stem.replace("-", "_")] = ko
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        ko = found.get(name)
        if ko is None:
            # built into the kernel (modules.builtin), or no such module
            if not any(
                line.rsplit("/", 1)[-1].removesuffix(".ko").replace("-", "_") == name
                for builtin in tree.rglob("modules.builtin")
                for line in builtin.read_text().split()
            ):
                raise SystemExit(f"guest_image.py: kernel has no module {name}")
            return
        for dep in module_depends(ko):
            visit(dep)
        order.append(ko)

    for name in wanted:
        visit(name)
    return order


# -- the root -------------------------------------------------------------------------------


def install_modules(root: Path, modules: list[Path]) -> list[str]:
    dst = images.inside(root, MODULE_DIR)
    dst.mkdir(parents=True, exist_ok=True)
    for ko in modules:
        shutil.copy2(ko, dst / ko.name)
    return [ko.stem for ko in modules]


def _copy_lib(root: Path, src: Path | str) -> None:
    """Copy a binary to the same path inside ``root``, stripped when ``strip`` is there."""
    dst = images.inside(root, src)
    if dst.exists():
        return
    images.copy_file(root, src)
    if shutil.which("strip"):
        subprocess.run(["strip", "--strip-unneeded", str(dst)], capture_output=True, check=False)


def stdlib_zip(stdlib: Path, out: Path) -> int:
    """The standard library as byte code in an uncompressed zip; returns the module count."""
    import py_compile
    import zipfile

    count = 0
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for dirpath, dirnames, filenames in os.walk(stdlib):
            here = Path(dirpath)
            dirnames[:] = sorted(
                d for d in dirnames if d not in STDLIB_SKIP and not d.startswith("config-")
            )
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                rel = (here / name).relative_to(stdlib).as_posix()
                pyc = Path(tmp) / "m.pyc"
                try:
                    py_compile.compile(
                        str(here / name),
                        cfile=str(pyc),
                        dfile=rel,
                        doraise=True,
                        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
                    )
                except py_compile.PyCompileError as err:
                    log(f"skipping {rel}: {err.msg.strip().splitlines()[-1]}")
                    continue
                info = zipfile.ZipInfo(rel + "c", agent_bundle.EPOCH)
                zf.writestr(info, pyc.read_bytes())
                count += 1
    return count


def install_python(root: Path) -> Path:
    """The trimmed interpreter; returns its path (the same inside the guest)."""
    exe, stdlib, site = images.python_paths()
    images.copy_file(root, exe)
    prefix = Path(sys.base_prefix)
    ver = f"{sys.version_info[0]}{sys.version_info[1]}"
    zip_path = images.inside(root, prefix / "lib" / f"python{ver}.zip")
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    stdlib_zip(stdlib, zip_path)
    # Python finds its prefix by os.py (or os.pyc) in the stdlib folder
    dst_stdlib = images.inside(root, stdlib)
    dst_stdlib.mkdir(parents=True, exist_ok=True)
    (dst_stdlib / "os.py").write_text("# landmark: the standard library is in the zip\n")
    dynload = [
        so
        for so in sorted(stdlib.joinpath("lib-dynload").glob("*.so"))
        if not DYNLOAD_SKIP.match(so.name)
    ]
    for so in dynload:
        _copy_lib(root, so)
    images.inside(root, site).mkdir(parents=True, exist_ok=True)
    for pkg in images.PACKAGES:
        mod = __import__(pkg)
        src_dir = Path(mod.__file__ or "").parent
        dst = images.inside(root, site) / pkg
        shutil.copytree(
            src_dir, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyi", "py.typed")
        )
        dynload += sorted(src_dir.rglob("*.so"))
        for so in dst.rglob("*.so"):
            if shutil.which("strip"):
                subprocess.run(["strip", "--strip-unneeded", str(so)], check=False)
    for lib in sorted(images.shared_libs([exe, *dynload])):
        _copy_lib(root, lib)
    for name in ("python3", "python"):
        (root / "usr" / "bin" / name).symlink_to(exe)
    return exe


def install_agent(root: Path, python: Path) -> None:
    pyz = agent_bundle.build(agent_bundle.DEFAULT_OUT)
    dst = images.inside(root, AGENT_PYZ)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(pyz, dst)
    wrapper = root / "usr" / "bin" / "megabus"
    wrapper.write_text(MEGABUS_WRAPPER.format(python=python, pyz=AGENT_PYZ))
    wrapper.chmod(0o755)


def install_etc(root: Path, modules: list[str]) -> None:
    for d in ("run", "var/log", "lib/modules"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\ntty:x:5:\n")
    (root / "etc" / "hostname").write_text("miniccc\n")
    (root / "etc" / "resolv.conf").write_text("")
    script = root / "etc" / "udhcpc" / "default.script"
    script.write_text(images.UDHCPC_SCRIPT)
    script.chmod(0o755)
    init = root / "init"
    init.write_text(init_text(modules))
    init.chmod(0o755)


def init_text(modules: list[str]) -> str:
    return INIT.replace("@MODULES@", " ".join(modules)).replace("@MODULE_DIR@", MODULE_DIR)


def write_cpio(root: Path, out: Path) -> None:
    """``root`` as an uncompressed newc archive, in a stable order."""
    names = sorted(
        "." + ("/" + str(p.relative_to(root)) if p != root else "")
        for p in [root, *root.rglob("*")]
    )
    with open(out, "wb") as fh:
        proc = subprocess.run(
            ["cpio", "--quiet", "-o", "-H", "newc", "--reproducible", "-R", "0:0"],
            input="\n".join(names).encode() + b"\n",
            stdout=fh,
            stderr=subprocess.PIPE,
            cwd=root,
            check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"guest_image.py: cpio failed: {proc.stderr.decode().strip()}")


# -- stamps and the build ------------------------------------------------------------------


def stamp(deb: Path) -> str:
    exe, stdlib, _ = images.python_paths()
    bb = images.busybox()
    st = bb.stat()
    parts = [
        LAYOUT,
        deb.name,
        f"{bb}:{st.st_size}:{st.st_mtime_ns}",
        f"{exe}:{sys.version}",
        str(stdlib),
        INIT,
        MEGABUS_WRAPPER,
        images.UDHCPC_SCRIPT,
        agent_bundle.stamp(),
        *(f"{p}={importlib.metadata.version(p)}" for p in images.PACKAGES),
        ",".join(MODULES),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def current(dest: Path, want: str) -> bool:
    try:
        have = (dest / STAMP).read_text().strip()
    except OSError:
        return False
    return have == want and (dest / KERNEL).is_file() and (dest / INITRD).is_file()


@contextlib.contextmanager
def locked(dest: Path) -> Iterator[None]:
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".miniccc.lock", "wb") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def build(dest: Path, force: bool = False, deb: Path | None = None) -> tuple[Path, Path]:
    """Make ``dest/miniccc.kernel`` and ``dest/miniccc.initrd`` current; returns both."""
    kernel, initrd = dest / KERNEL, dest / INITRD
    with locked(dest):
        package = kernel_deb(dest / ".kernel", deb)
        want = stamp(package)
        if not force and current(dest, want):
            return kernel, initrd
        log(f"building {kernel} and {initrd} from {package.name}")
        with tempfile.TemporaryDirectory(prefix=".miniccc-", dir=dest) as tmp:
            work = Path(tmp)
            run("dpkg-deb", "-x", str(package), str(work / "deb"))
            vmlinuz = sorted((work / "deb" / "boot").glob("vmlinuz-*"))
            if not vmlinuz:
                raise SystemExit(f"guest_image.py: no vmlinuz in {package.name}")
            tree = work / "deb" / "lib" / "modules"
            if not tree.is_dir():
                tree = work / "deb" / "usr" / "lib" / "modules"
            root = work / "root"
            root.mkdir(mode=0o755)
            images.install_busybox(root)
            modules = install_modules(root, module_order(tree, MODULES))
            install_etc(root, modules)
            python = install_python(root)
            install_agent(root, python)
            write_cpio(root, work / INITRD)
            shutil.copy2(vmlinuz[-1], work / KERNEL)
            (dest / STAMP).unlink(missing_ok=True)
            os.replace(work / KERNEL, kernel)
            os.replace(work / INITRD, initrd)
            (dest / STAMP).write_text(want + "\n")
    return kernel, initrd


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dest",
        type=Path,
        default=Path(os.environ.get("images") or DEFAULT_DEST),  # noqa: SIM112 (2.8 spells it so)
        help="images folder (default: $images, else build/images)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if current")
    parser.add_argument("--kernel-deb", type=Path, help="a linux-image .deb to use")
    args = parser.parse_args()
    build(args.dest.resolve(), force=args.force, deb=args.kernel_deb)
    print(args.dest.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
