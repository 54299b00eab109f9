#!/usr/bin/env python3
"""Build the router images: ``minirouterfs`` (containers) and ``minirouter.kernel/.initrd`` (KVM).

    .venv/bin/python ops/router_image.py [--dest DIR] [--force] [--mirror URL] [--no-kvm]

Everything goes to ``$images`` (default ``build/images``) and the images
folder is printed. 2.8's router scripts use them as::

    vm config filesystem $images/minirouterfs
    vm config preinit $images/minirouterfs/preinit
    # or, for a KVM router:
    vm config kernel $images/minirouter.kernel
    vm config initrd $images/minirouter.initrd

``minirouterfs`` is a Debian root made by ``debootstrap --variant=minbase
bookworm`` from the mirror this machine's apt uses (``/etc/apt/sources.list``
and ``sources.list.d``; ``--mirror`` overrides), with what the router daemon
runs (dnsmasq, BIRD 2, iptables, iproute2, dhclient) and what 2.8's router
scripts run in it (nslookup, route, ping, bash, ps), docs, man pages and
locales stripped. Into its ``/usr/local/lib/python3.11/dist-packages`` go the
megabus packages the guest side needs (bus, agent, router) and msgspec from
the venv: the same CPython 3.11 ABI as bookworm's python3, which the build
checks. ``/usr/local/bin/minirouter`` runs ``python3 -m megabus.router``,
``/usr/local/bin/megabus`` only ``megabus agent``.

``/init`` mounts what a plain chroot lacks, brings up the interfaces, turns
on forwarding where it still can, starts the agent on the unix socket ``/cc``
and the router daemon (each restarted if it exits) and stays PID 1, reaping
orphans (dhclient forks away), with a shell on the console when there is one.
``/preinit`` is the script 2.8's router images run before init: on the host,
as root, inside the container's new namespaces before its ``/proc/sys`` is
made read-only; it turns on IPv4 and IPv6 forwarding for the container's
network namespace (and refuses to run in the host's own).

The KVM variant is the same root as an uncompressed newc initramfs (nothing
to inflate under TCG), with Debian's cloud kernel (fetched as
``ops/guest_image.py`` does), its virtio and netfilter modules with
``modules.dep`` (so ``modprobe`` and the kernel's own module loading work for
iptables), and an init that loads them and starts the agent on
``/dev/virtio-ports/cc`` and the router daemon.

Cached: a stamp of the root's inputs decides when to debootstrap again (the
packages stay in ``<dest>/.debootstrap``, so a rebuild fetches nothing); the
megabus copy is refreshed in place when the sources change; the initrd is
rebuilt when the root, the code or its own inputs change. A lock serialises
concurrent builders; new trees and files replace old ones with renames.
Needs root, ``debootstrap``, ``cpio``, ``dpkg-deb`` and ``depmod`` (kmod).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# sibling scripts: minicccfs's copy helpers, the KVM guest's kernel and cpio helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))
import guest_image
import images

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO / "build" / "images"
NAME = "minirouterfs"
KERNEL = "minirouter.kernel"
INITRD = "minirouter.initrd"
#: Bump when the root's layout below changes.
LAYOUT = "1"
SUITE = "bookworm"
#: What the daemon runs and what 2.8's router scripts run inside a router (bash is in minbase).
DEBS = (
    "python3",
    "dnsmasq-base",
    "bird2",
    "iptables",
    "iproute2",
    "isc-dhcp-client",
    "dnsutils",
    "net-tools",
    "iputils-ping",
    "procps",
    "kmod",
)
#: The megabus packages the guest side imports (the agent needs bus.cc_messages).
ROOTS = ("bus", "agent", "router")
#: Where Debian's python3 looks for local packages.
SITE = "usr/local/lib/python3.11/dist-packages"
BASE_STAMP = ".megabus-base"
CODE_STAMP = ".megabus-code"
KVM_STAMP = ".minirouter.stamp"
#: Stripped from the root: documentation and translations nobody reads in a router.
STRIP = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/linda",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/cache/debconf/templates.dat-old",
    "var/log/bootstrap.log",
)
#: KVM: modules loaded at boot; the netfilter ones are there for the kernel to load on demand.
BOOT_MODULES = ("virtio_pci", "virtio_console", "virtio_net", "virtio_blk")
MODULE_TREES = ("kernel/net/netfilter", "kernel/net/ipv4/netfilter", "kernel/net/ipv6/netfilter")

INIT = """\
#!/bin/sh
# minirouterfs init (megabus): the agent and the router daemon; PID 1 stays and reaps.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# megabus mounts these for containers; anything else (a chroot) may not
[ -e /proc/self ] || mount -t proc proc /proc
[ -e /sys/class ] || mount -t sysfs sysfs /sys
[ -w /tmp ] || mount -t tmpfs tmpfs /tmp
@SETUP@
mkdir -p /run/bird /var/log /tmp/minirouter
# plain `birdc` reaches the router's bird (2.8's socket is /bird.sock)
ln -sf /bird.sock /run/bird/bird.ctl

# forwarding: a container's preinit set it already (its /proc/sys is read-only now)
for f in /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding \\
         /proc/sys/net/ipv6/conf/default/forwarding; do
    [ "$(cat $f 2>/dev/null)" = 1 ] || echo 1 2>/dev/null >$f
done

ip link set lo up
for dev in /sys/class/net/*; do
    [ "${dev##*/}" = lo ] || ip link set "${dev##*/}" up 2>/dev/null
done

(while :; do
    @AGENT@ </dev/null >>/var/log/megabus-agent.log 2>&1
    sleep 1
done) &
(while :; do
    minirouter -logfile /var/log/minirouter.log </dev/null >/dev/null 2>&1
    sleep 1
done) &
@READY@
# a shell on the console, when there is one (a background list's stdin is /dev/null otherwise)
if [ -t 0 ]; then
    exec 3<&0
    (while :; do sh -i <&3; sleep 1; done) &
fi
# PID 1 stays: each wait also reaps the orphans the kernel hands it
while :; do
    sleep 3600 &
    wait $!
done
"""

CONTAINER_SETUP = ""
#: megabus passes the VM's UUID in init's environment (there may be no DMI to read it from).
CONTAINER_AGENT = "megabus agent -family unix -parent /cc ${MEGABUS_UUID:+-uuid $MEGABUS_UUID}"

KVM_SETUP = (
    """\
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
hostname -F /etc/hostname
for m in @MODULES@; do
    modprobe "$m" || echo "init: modprobe $m failed" >/dev/console
done
# udev's job: /dev/virtio-ports/<name> for every named port
"""
    + guest_image.VIRTIO_PORT_LINKS
    + """\
# the UUID: DMI (QEMU's -uuid), else megabus.uuid= on the command line, else any
uuid=$(cat /sys/class/dmi/id/product_uuid 2>/dev/null)
if [ -z "$uuid" ]; then
    for word in $(cat /proc/cmdline); do
        case "$word" in megabus.uuid=*) uuid="${word#megabus.uuid=}" ;; esac
    done
fi
[ -n "$uuid" ] || uuid=$(cat /proc/sys/kernel/random/uuid)
echo "init: minirouter guest $uuid: starting the agent and the router daemon" >/dev/console
"""
)
KVM_AGENT = 'megabus agent -serial /dev/virtio-ports/cc -uuid "$uuid"'
#: A VM's console is all one sees of its boot: say when the daemon listens.
KVM_READY = """\
i=0
while [ $i -lt 600 ] && [ ! -S /tmp/minirouter/minirouter ]; do
    sleep 0.1
    i=$((i + 1))
done
[ -S /tmp/minirouter/minirouter ] && echo "init: minirouter listening" >/dev/console
# minirouter.check=1 on the kernel command line: apply a small config (the firewall needs
# netfilter modules loaded on demand) and show the outcome on the console
case " $(cat /proc/cmdline) " in
*" minirouter.check=1 "*)
    printf '%s\n' "log level error" "ip add lo 10.255.255.1/32" "dnsmasq flush" \
        "dnsmasq commit" "bird flush" "bird routerid 10.255.255.1" "bird commit" \
        "fw flush" "fw default drop" >/tmp/minirouter-check
    if minirouter -u /tmp/minirouter-check >/dev/console 2>&1; then
        echo "init: check passed" >/dev/console
    fi
    iptables -S >/dev/console 2>&1
    ;;
esac
"""

PREINIT = """\
#!/bin/sh
# minirouterfs preinit (megabus), as 2.8's router images have one. megabus runs it on the
# host, as root, inside the container's new namespaces before the container's /proc/sys
# is made read-only: forwarding has to be turned on here, for the container's network
# namespace (net sysctls belong to the namespace of whoever writes them).
if [ "$(readlink /proc/self/ns/net)" = "$(readlink /proc/1/ns/net 2>/dev/null)" ]; then
    echo "preinit: not in a container's network namespace; the host's forwarding stays as it is" >&2
    exit 1
fi
echo 1 >/proc/sys/net/ipv4/ip_forward || exit 1
# IPv6 may be off in this kernel: then there is nothing to forward
for f in /proc/sys/net/ipv6/conf/all/forwarding /proc/sys/net/ipv6/conf/default/forwarding; do
    [ -e "$f" ] && echo 1 >"$f"
done
exit 0
"""

MINIROUTER = """\
#!/bin/sh
exec python3 -m megabus.router "$@"
"""

MEGABUS = """\
#!/bin/sh
# megabus in the router image: only its agent
if [ "$1" != agent ]; then
    echo "megabus: this image has only 'megabus agent'" >&2
    exit 2
fi
shift
exec python3 -m megabus.agent "$@"
"""


def log(msg: str) -> None:
    print(f"router_image.py: {msg}", file=sys.stderr)


def run(*argv: str, cwd: Path | None = None, timeout: float = 1800) -> str:
    """Run a tool; its stdout (``SystemExit`` with its output when it fails)."""
    try:
        proc = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=timeout
        )
    except FileNotFoundError:
        raise SystemExit(f"router_image.py: {argv[0]} not found") from None
    if proc.returncode != 0:
        out = (proc.stderr.strip() or proc.stdout.strip())[-3000:]
        raise SystemExit(f"router_image.py: {' '.join(argv)} failed: {out}")
    return proc.stdout


# -- the mirror ----------------------------------------------------------------------------


def _one_line_sources(text: str) -> Iterator[tuple[str, str, list[str]]]:
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            yield words[1], words[2], words[3:]


def _deb822_sources(text: str) -> Iterator[tuple[str, str, list[str]]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                yield uri, suite, fields.get("components", "").split()


def mirror(etc: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses for ``bookworm`` (main)."""
    found: list[tuple[str, str, list[str]]] = []
    files = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.name.endswith(".sources"):
            found += _deb822_sources(text)
        elif path.name == "sources.list" or path.name.endswith(".list"):
            found += _one_line_sources(text)
    for uri, suite, components in found:
        if suite == SUITE and "main" in components:
            return uri
    # another release's machine: its Debian mirror carries bookworm too
    for uri, suite, components in found:
        if "main" in components and not re.search(r"security|updates|backports", suite):
            return uri
    raise SystemExit(f"router_image.py: no Debian mirror in {etc}/sources.list*; give --mirror URL")


# -- stamps ---------------------------------------------------------------------------------


def init_text(kvm: bool, modules: tuple[str, ...] = BOOT_MODULES) -> str:
    setup = KVM_SETUP.replace("@MODULES@", " ".join(modules)) if kvm else CONTAINER_SETUP
    return (
        INIT.replace("@SETUP@", setup)
        .replace("@AGENT@", KVM_AGENT if kvm else CONTAINER_AGENT)
        .replace("@READY@", KVM_READY if kvm else "")
    )


def base_stamp(mirror_url: str) -> str:
    parts = [
        LAYOUT,
        SUITE,
        mirror_url,
        ",".join(DEBS),
        ",".join(STRIP),
        f"python{sys.version_info[0]}.{sys.version_info[1]}",
        init_text(kvm=False),
        PREINIT,
        MINIROUTER,
        MEGABUS,
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def source_files() -> Iterator[Path]:
    return images.source_files(ROOTS)


def code_stamp() -> str:
    return images.code_stamp(LAYOUT, ROOTS, images.PACKAGES)


# -- the root -------------------------------------------------------------------------------


def debootstrap(root: Path, mirror_url: str, cache: Path) -> None:
    if os.geteuid() != 0:
        raise SystemExit("router_image.py: debootstrap needs root")
    cache.mkdir(parents=True, exist_ok=True)
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(DEBS)}",
        f"--cache-dir={cache}",
    ]
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    if keyring.is_file():
        argv.append(f"--keyring={keyring}")
    log(f"debootstrap {SUITE} from {mirror_url} (a minute or two)")
    run(*argv, SUITE, str(root), mirror_url)


def strip(root: Path) -> None:
    for rel in STRIP:
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        elif path.exists():
            path.unlink()


def check_python(root: Path) -> None:
    """msgspec is copied from the venv: the root's python3 must be the same CPython minor."""
    want = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    have = os.readlink(root / "usr" / "bin" / "python3")
    if os.path.basename(have) != want:
        raise SystemExit(
            f"router_image.py: {SUITE}'s python3 is {have}, the venv's is {want}: "
            "msgspec's compiled module would not load"
        )


def install_etc(root: Path) -> None:
    (root / "etc" / "hostname").write_text("minirouter\n")
    (root / "etc" / "resolv.conf").write_text("")
    for name, text in (("init", init_text(kvm=False)), ("preinit", PREINIT)):
        path = root / name
        path.write_text(text)
        path.chmod(0o755)
    for name, text in (("minirouter", MINIROUTER), ("megabus", MEGABUS)):
        path = root / "usr" / "local" / "bin" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o755)


def install_code(root: Path) -> None:
    """The megabus packages and msgspec in the root's dist-packages (swapped in whole)."""
    site = root / SITE
    site.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".megabus-", dir=site))
    staged.chmod(0o755)
    for src in source_files():
        dst = staged / src.relative_to(REPO)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    # byte code now: the guest's root may be read-only, or an overlay that would copy it up
    compileall.compile_dir(str(staged), quiet=1, workers=1)
    images.swap_in(staged, site / "megabus")
    for pkg in images.PACKAGES:
        mod = __import__(pkg)
        src_dir = Path(mod.__file__ or "").parent
        new = site / f".{pkg}-new-{os.getpid()}"
        shutil.rmtree(new, ignore_errors=True)
        shutil.copytree(src_dir, new, ignore=shutil.ignore_patterns("__pycache__", "*.pyi"))
        images.swap_in(new, site / pkg)
    (root / CODE_STAMP).write_text(code_stamp() + "\n")


@contextlib.contextmanager
def locked(dest: Path) -> Iterator[None]:
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".minirouter.lock", "wb") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def build_fs(dest: Path, force: bool = False, mirror_url: str = "") -> Path:
    """Make ``dest/minirouterfs`` current (the caller holds the lock); returns its path."""
    image = dest / NAME
    url = mirror_url or mirror()
    want = base_stamp(url)
    if force or images.read_stamp(image, BASE_STAMP) != want:
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{NAME}-", dir=dest))
        try:
            tmp.chmod(0o755)
            debootstrap(tmp, url, dest / ".debootstrap")
            check_python(tmp)
            strip(tmp)
            install_etc(tmp)
            install_code(tmp)
            (tmp / BASE_STAMP).write_text(want + "\n")
            images.swap_in(tmp, image)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log(f"built {image} in {time.monotonic() - started:.0f}s")
    elif images.read_stamp(image, CODE_STAMP) != code_stamp():
        log(f"refreshing megabus in {image}")
        install_code(image)
    return image


# -- the KVM variant ------------------------------------------------------------------------


def module_closure(tree: Path) -> list[Path]:
    """The netfilter trees and the boot modules, with every module they depend on."""
    by_name = {ko.stem.replace("-", "_"): ko for ko in tree.rglob("*.ko")}
    wanted = [ko for rel in MODULE_TREES for ko in sorted((tree / rel).rglob("*.ko"))]
    wanted += [by_name[m] for m in BOOT_MODULES if m in by_name]
    seen: dict[Path, None] = {}
    todo = list(wanted)
    while todo:
        ko = todo.pop()
        if ko in seen:
            continue
        seen[ko] = None
        todo += [by_name[d] for d in guest_image.module_depends(ko) if d in by_name]
    return sorted(seen)


def install_modules(extra: Path, tree: Path, merged_usr: bool) -> None:
    """Modules under ``/lib/modules/<version>`` with ``depmod``'s indexes."""
    version = tree.name
    if merged_usr:
        # the root's /lib is a link to usr/lib: the same here, so that depmod -b sees through it
        (extra / "usr" / "lib").mkdir(parents=True)
        (extra / "lib").symlink_to("usr/lib")
    dst = extra / "lib" / "modules" / version
    for ko in module_closure(tree):
        target = dst / ko.relative_to(tree)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ko, target)
    for name in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        if (tree / name).exists():
            shutil.copy2(tree / name, dst / name)
    depmod = shutil.which("depmod") or "/sbin/depmod"
    run(depmod, "-b", str(extra), version)


def kvm_stamp(deb: Path, fs: Path) -> str:
    parts = [
        LAYOUT,
        deb.name,
        images.read_stamp(fs, BASE_STAMP),
        images.read_stamp(fs, CODE_STAMP),
        init_text(kvm=True),
        ",".join(MODULE_TREES),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def write_cpio(out: Path, fs: Path, extra: Path) -> None:
    """The root and the KVM extras as one newc archive; the extras' ``/init`` wins."""
    container_only = {"init", "preinit", BASE_STAMP, CODE_STAMP}
    with open(out, "wb") as fh:
        for root, skip in ((fs, container_only), (extra, set())):
            names = ["."]
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for name in sorted([*dirnames, *filenames]):
                    rel = os.path.relpath(os.path.join(dirpath, name), root)
                    if rel.split("/")[0] not in skip:
                        names.append("./" + rel)
            proc = subprocess.run(
                ["cpio", "--quiet", "-o", "-H", "newc", "--reproducible", "-R", "0:0"],
                input="\n".join(names).encode() + b"\n",
                stdout=fh,
                stderr=subprocess.PIPE,
                cwd=root,
                check=False,
            )
            if proc.returncode != 0:
                raise SystemExit(f"router_image.py: cpio failed: {proc.stderr.decode().strip()}")


def build_kvm(dest: Path, fs: Path, force: bool = False) -> tuple[Path, Path]:
    """Make ``dest/minirouter.kernel`` and ``.initrd`` current (the caller holds the lock)."""
    kernel, initrd = dest / KERNEL, dest / INITRD
    with guest_image.locked(dest):  # the kernel package cache is the miniccc image's
        package = guest_image.kernel_deb(dest / ".kernel", None)
    want = kvm_stamp(package, fs)
    have = images.read_stamp(dest, KVM_STAMP)
    if not force and have == want and kernel.is_file() and initrd.is_file():
        return kernel, initrd
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=".minirouter-", dir=dest) as tmp:
        work = Path(tmp)
        run("dpkg-deb", "-x", str(package), str(work / "deb"))
        vmlinuz = sorted((work / "deb" / "boot").glob("vmlinuz-*"))
        if not vmlinuz:
            raise SystemExit(f"router_image.py: no vmlinuz in {package.name}")
        trees = sorted((work / "deb" / "lib" / "modules").glob("*")) or sorted(
            (work / "deb" / "usr" / "lib" / "modules").glob("*")
        )
        if not trees:
            raise SystemExit(f"router_image.py: no modules in {package.name}")
        extra = work / "extra"
        extra.mkdir(mode=0o755)
        install_modules(extra, trees[-1], merged_usr=(fs / "lib").is_symlink())
        init = extra / "init"
        init.write_text(init_text(kvm=True))
        init.chmod(0o755)
        write_cpio(work / INITRD, fs, extra)
        shutil.copy2(vmlinuz[-1], work / KERNEL)
        (dest / KVM_STAMP).unlink(missing_ok=True)
        os.replace(work / KERNEL, kernel)
        os.replace(work / INITRD, initrd)
        (dest / KVM_STAMP).write_text(want + "\n")
    log(f"built {kernel} and {initrd} in {time.monotonic() - started:.0f}s")
    return kernel, initrd


def build(dest: Path, force: bool = False, mirror_url: str = "", kvm: bool = True) -> Path:
    """Make the router images in ``dest`` current; returns ``dest/minirouterfs``."""
    with locked(dest):
        fs = build_fs(dest, force=force, mirror_url=mirror_url)
        if kvm:
            build_kvm(dest, fs, force=force)
    return fs


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--dest",
        type=Path,
        default=Path(os.environ.get("images") or DEFAULT_DEST),  # noqa: SIM112 (2.8 spells it so)
        help="images folder (default: $images, else build/images)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if current")
    parser.add_argument("--mirror", default="", help="Debian mirror (default: apt's)")
    parser.add_argument("--no-kvm", action="store_true", help="only minirouterfs")
    args = parser.parse_args()
    dest = args.dest.resolve()
    build(dest, force=args.force, mirror_url=args.mirror, kvm=not args.no_kvm)
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
