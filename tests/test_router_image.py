"""``ops/router_image.py``: minirouterfs and the KVM router, built (or found current) for real.

The root is checked in a chroot (programs, wrappers, the agent and the router
daemon on the root's own Python), its preinit in a network namespace, and its
daemon runs from the root (chroot, inside a namespace the test makes) with the
root's own dnsmasq, BIRD and iptables: a DNS answer, a BIRD route and
firewall rules come out. The KVM variant boots under TCG (this host's nested
KVM cannot boot Linux) with ``minirouter.check=1``: its init applies a config
whose firewall needs netfilter modules loaded on demand.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from routerlab import Lab, require, wait_for

#: The first build runs debootstrap (about a minute) and may fetch a kernel package.
pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "build" / "images"
sys.path.insert(0, str(REPO / "ops"))
import router_image as builder  # noqa: E402 (the script under test)

#: What the daemon runs and what 2.8's router scripts run, where Debian puts them.
PROGRAMS = (
    "usr/sbin/dnsmasq",
    "usr/sbin/bird",
    "usr/sbin/birdc",
    "usr/sbin/iptables",
    "usr/sbin/iptables-restore",
    "usr/sbin/ip",
    "usr/sbin/dhclient",
    "usr/sbin/route",
    "usr/sbin/modprobe",
    "usr/bin/nslookup",
    "usr/bin/ping",
    "usr/bin/bash",
    "usr/bin/ps",
    "usr/bin/python3",
)


def build() -> Path:
    """Run the real builder as a user would; the images folder."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "ops" / "router_image.py"), "--dest", str(IMAGES)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert proc.returncode == 0, f"ops/router_image.py failed:\n{proc.stderr}"
    return Path(proc.stdout.strip())


@pytest.fixture(scope="module")
def images() -> Path:
    require("debootstrap", "cpio", "dpkg-deb", "depmod")
    return build()


def chroot(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chroot", str(root), *argv], capture_output=True, text=True, check=False, timeout=60
    )


def test_images_are_cached_between_runs(images: Path) -> None:
    files = [
        images / builder.NAME / builder.BASE_STAMP,
        images / builder.NAME / builder.CODE_STAMP,
        images / builder.KERNEL,
        images / builder.INITRD,
    ]
    before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in files]
    started = time.monotonic()
    assert build() == images
    assert time.monotonic() - started < 30
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in files] == before
    assert (images / builder.KERNEL).read_bytes()[0x202:0x206] == b"HdrS"
    assert (images / builder.INITRD).read_bytes()[:6] == b"070701"  # newc, uncompressed


def test_changed_sources_refresh_only_the_megabus_copy(images: Path) -> None:
    root = images / builder.NAME
    base = (root / builder.BASE_STAMP).stat().st_ino
    # as if the sources had changed since the copy was made
    (root / builder.CODE_STAMP).write_text("stale\n")
    build()
    assert (root / builder.CODE_STAMP).read_text().strip() == builder.code_stamp()
    assert (root / builder.BASE_STAMP).stat().st_ino == base
    assert (root / builder.SITE / "megabus" / "router" / "daemon.py").is_file()


def test_programs_wrappers_and_python_are_in_the_root(images: Path) -> None:
    root = images / builder.NAME
    missing = [p for p in PROGRAMS if not os.access(root / p, os.X_OK)]
    assert not missing, missing
    for name in ("init", "preinit", "usr/local/bin/minirouter", "usr/local/bin/megabus"):
        assert os.access(root / name, os.X_OK), name
    assert 'python3 -m megabus.router "$@"' in (root / "usr/local/bin/minirouter").read_text()
    out = chroot(root, "/usr/local/bin/minirouter", "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: minirouter" in out.stdout
    out = chroot(root, "python3", "-m", "megabus.router", "--help")
    assert out.returncode == 0, out.stderr
    out = chroot(root, "megabus", "agent", "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("megabus agent ")
    out = chroot(
        root, "python3", "-c", "import msgspec, megabus.agent.client, megabus.bus.cc_messages"
    )
    assert out.returncode == 0, out.stderr
    init = (root / "init").read_text()
    assert "megabus agent -family unix -parent /cc" in init
    assert "minirouter -logfile" in init
    # nothing of the docs and translations stayed
    assert not any((root / "usr/share/doc").iterdir())
    assert not (root / "usr/share/man").exists() or not any((root / "usr/share/man").iterdir())


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        await lab.close()


async def test_preinit_turns_on_forwarding_in_the_containers_namespace_only(
    images: Path, lab: Lab
) -> None:
    require("unshare")
    preinit = str(images / builder.NAME / "preinit")
    ns = await lab.netns("p")
    await lab.must(ns, preinit)
    assert (await lab.must(ns, "cat", "/proc/sys/net/ipv4/ip_forward")).strip() == "1"
    out = await lab.must(ns, "cat", "/proc/sys/net/ipv6/conf/default/forwarding")
    assert out.strip() == "1"
    # where pid 1 shares its network namespace (the host's, as megabus sees it) it refuses;
    # tried in a throwaway namespace, so that a broken check could not touch the host
    proc = await asyncio.create_subprocess_exec(
        "unshare", "--net", "--pid", "--fork", "--mount-proc", preinit,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out_b, _ = await proc.communicate()
    assert proc.returncode == 1
    assert b"not in a container's network namespace" in out_b


#: Run inside `ip netns exec` (a private mount namespace): mount what a container gets,
#: chroot into the image and exec its minirouter with every file under the state folder.
CHROOT_DAEMON = """\
import os, subprocess, sys
root, state = sys.argv[1], sys.argv[2]
def mount(*args):
    subprocess.run(["mount", *args], check=True)
mount("-t", "proc", "proc", root + "/proc")
mount("-t", "sysfs", "sysfs", root + "/sys")
mount("-t", "tmpfs", "tmpfs", root + "/tmp")
mount("-t", "tmpfs", "tmpfs", root + "/run")
os.makedirs(root + "/tmp/minirouter")
mount("--bind", state, root + "/tmp/minirouter")
os.chroot(root)
os.chdir("/")
s = "/tmp/minirouter/"
os.execve("/usr/local/bin/minirouter", [
    "minirouter", "-agent", "", "-logfile", s + "log", "-level", "debug",
    "-dnsmasq-conf", s + "dnsmasq.conf", "-dnsmasq-leases", s + "leases",
    "-bird-conf", s + "bird.conf", "-bird-socket", s + "bird.ctl",
], {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
"""

IMAGE_CONFIG = """\
log level error
ip flush
ip add 0 10.5.0.1/24
ip add lo 10.255.0.9/32
dnsmasq flush
dnsmasq dhcp range 10.5.0.1 10.5.0.50 10.5.0.60
dnsmasq dns 10.5.0.77 router.test
route del default
dnsmasq commit
bird flush
bird static 10.6.0.0/24 10.5.0.2 null
bird routerid 10.255.0.9
bird commit
fw flush
fw default drop
fw accept in 0 10.6.0.5:22 tcp
"""


async def test_the_roots_daemon_runs_its_own_dnsmasq_bird_and_iptables(
    images: Path, lab: Lab
) -> None:
    require("dig")
    r, c = await lab.netns("r"), await lab.netns("c")
    await lab.link(r, "veth0", c, "veth0")
    await lab.must(c, "ip", "addr", "add", "10.5.0.2/24", "dev", "veth0")
    state = lab.tmp / "state"
    state.mkdir()
    root = str(images / builder.NAME)
    await lab.spawn(r, sys.executable, "-c", CHROOT_DAEMON, root, str(state))

    async def listening() -> bool:
        return (state / "minirouter").exists()

    await wait_for(listening, 30, "the image's router daemon")
    (state / "config").write_text(IMAGE_CONFIG)
    code, out = await lab.sh(
        r, sys.executable, "-m", "megabus.router", "-u", str(state / "config"),
        "-path", str(state), limit=60,
    )  # fmt: skip
    assert code == 0, f"{out}\n{(state / 'log').read_text(errors='replace')[-3000:]}"
    answer = await lab.must(c, "dig", "+short", "+time=2", "+tries=2", "@10.5.0.1", "router.test")
    assert answer.strip() == "10.5.0.77"

    async def bird_route() -> bool:
        out = await lab.must(r, "ip", "-4", "route", "show", "10.6.0.0/24")
        return "via 10.5.0.2 " in out and "proto bird" in out

    await wait_for(bird_route, 20, "the image's BIRD route in the kernel")
    rules = await lab.must(r, "iptables", "-S")
    assert "-P FORWARD DROP" in rules
    assert "-A FORWARD -d 10.6.0.5/32 -i veth0 -p tcp -m tcp --dport 22 -j ACCEPT" in rules


async def test_the_kvm_router_boots_and_applies_a_config(images: Path, tmp_path: Path) -> None:
    require("qemu-system-x86_64")
    console = tmp_path / "console.log"
    proc = await asyncio.create_subprocess_exec(
        "qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-display", "none",
        "-no-reboot", "-monitor", "none", "-nic", "none",
        "-kernel", str(images / builder.KERNEL), "-initrd", str(images / builder.INITRD),
        "-append", "console=ttyS0 panic=-1 minirouter.check=1",
        "-serial", f"file:{console}",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:

        async def checked() -> bool:
            assert proc.returncode is None, console.read_text(errors="replace")[-3000:]
            text = console.read_text(errors="replace") if console.exists() else ""
            return "init: check passed" in text and "-A FORWARD -j ESTABLISHED" in text

        await wait_for(checked, 150, "the KVM router's check on its console", step=1.0)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    text = console.read_text(errors="replace")
    assert "init: minirouter listening" in text
    assert "-P FORWARD DROP" in text
    assert "init: modprobe" not in text  # no module failed to load
