"""Container VMs on a real node: namespaces, overlay, cgroups (freezer), console, cleanup.

The node is real (dispatcher, state, VLAN store on a nats-server) and so are
the containers; what a container sees is checked from inside it (its console,
``nsenter`` into its namespaces, or files its init writes).
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest
from containers import alive, column, exists, in_container, read, runtime, vm_named, wait_for
from nodes import MiniNode, transcript

from megabus.handlers.vms._container_net import NETNS_DIR
from megabus.handlers.vms._container_shim import DEFAULT_CAPS

pytestmark = pytest.mark.timeout(180)
#: The console's answer (the echoed command line has ``$(...)`` where this has values).
ANSWER = re.compile(rb"host=inner init=\S+ n=\d+\r?\n")

LIFECYCLE = """\
vm config filesystem {fs}
vm config hostname foo
vm launch container foo[0-2]
.columns name,state vm info
vm start foo0
.columns name,state vm info
vm kill foo0
.columns name,state vm info
vm start foo0
.columns name,state vm info
vm stop foo0
.columns name,state vm info
vm start all
.columns name,state vm info
vm kill foo1
vm flush
.columns name,state vm info"""

LIFECYCLE_WANT = """\
## vm config filesystem {fs}
## vm config hostname foo
## vm launch container foo[0-2]
## .columns name,state vm info
name | state
foo0 | BUILDING
foo1 | BUILDING
foo2 | BUILDING
## vm start foo0
## .columns name,state vm info
name | state
foo0 | RUNNING
foo1 | BUILDING
foo2 | BUILDING
## vm kill foo0
## .columns name,state vm info
name | state
foo0 | QUIT
foo1 | BUILDING
foo2 | BUILDING
## vm start foo0
## .columns name,state vm info
name | state
foo0 | RUNNING
foo1 | BUILDING
foo2 | BUILDING
## vm stop foo0
## .columns name,state vm info
name | state
foo0 | PAUSED
foo1 | BUILDING
foo2 | BUILDING
## vm start all
## .columns name,state vm info
name | state
foo0 | RUNNING
foo1 | RUNNING
foo2 | RUNNING
## vm kill foo1
## vm flush
## .columns name,state vm info
name | state
foo0 | RUNNING
foo2 | RUNNING
"""


def snapshot_tree(root: Path) -> dict[str, tuple[int, int]]:
    """``path -> (size, mtime)`` of every file under ``root`` (symlinks not followed)."""
    out: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def mounted(path: str) -> bool:
    with open("/proc/mounts") as f:
        return any(line.split()[1] == path for line in f)


async def test_lifecycle_transcript_matches_2_8(cnode: MiniNode, minicccfs: Path) -> None:
    got = await transcript(cnode, LIFECYCLE.format(fs=minicccfs))
    assert got == LIFECYCLE_WANT.format(fs=minicccfs)


async def test_hostname_and_pid_namespace_seen_from_inside(
    cnode: MiniNode, minicccfs: Path
) -> None:
    await cnode.run(f"vm config filesystem {minicccfs}")
    await cnode.run("vm config hostname inner")
    assert await cnode.errors("vm launch container c0") == []
    assert await cnode.errors("vm start c0") == []
    rt = runtime(cnode, "c0")
    pid = vm_named(cnode, "c0").pid
    assert pid > 0
    assert alive(pid)

    # the console: busybox sh (started by /init) answers with the container's view
    reader, writer = await asyncio.open_unix_connection(os.path.join(rt.path, "console"))
    try:
        writer.write(
            b"echo host=$(hostname) init=$(cat /proc/1/comm) n=$(ls -d /proc/[0-9]* | wc -l)\n"
        )
        await writer.drain()
        seen = b""
        while (m := ANSWER.search(seen)) is None:
            chunk = await asyncio.wait_for(reader.read(4096), 30)
            assert chunk, f"console closed; got {seen!r}"
            seen += chunk
    finally:
        writer.close()
    fields = dict(kv.split("=") for kv in m.group(0).decode().split())
    # pid 1 is /init (a busybox shell script); only the container's few processes are visible
    assert fields["init"] == "init"
    assert int(fields["n"]) < 10

    # the same from nsenter: own hostname, own pid namespace whose pid 1 is the host's `pid`
    assert in_container(pid, "hostname").strip() == "inner"
    assert in_container(pid, "cat", "/proc/1/comm").strip() == "init"
    assert read("/proc/sys/kernel/hostname").strip() != "inner"
    for ns in ("pid", "uts", "net", "mnt", "ipc"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    # the netns is exposed for `ip netns`
    # (meganet_<id>, unless another node on this host has a VM with that ID)
    assert rt.netns.startswith("meganet_")
    assert rt.netns.endswith(f"_{vm_named(cnode, 'c0').id}")
    assert os.readlink(os.path.join(NETNS_DIR, rt.netns)) == f"/proc/{pid}/ns/net"
    hostinfo = await column(cnode, "hostname")
    assert hostinfo == {"c0": "inner"}

    # init runs with 2.8's capability set: no CAP_SYS_ADMIN, no CAP_SYS_MODULE
    status = dict(line.split(":\t", 1) for line in read(f"/proc/{pid}/status").splitlines())
    assert int(status["CapBnd"], 16) == DEFAULT_CAPS
    assert int(status["CapEff"], 16) == DEFAULT_CAPS

    # the console's TCP port: a new client gets the scrollback first
    assert rt.console_port > 0
    reader, writer = await asyncio.open_connection("127.0.0.1", rt.console_port)
    try:
        seen = b""
        while ANSWER.search(seen) is None:
            chunk = await asyncio.wait_for(reader.read(4096), 30)
            assert chunk, f"console closed; got {seen!r}"
            seen += chunk
    finally:
        writer.close()


async def test_building_container_is_frozen_before_init_and_stop_freezes(
    cnode: MiniNode, minicccfs: Path
) -> None:
    await cnode.run(f"vm config filesystem {minicccfs}")
    # ($$ would be eaten by the preprocessor, as by 2.8's: /proc/1/cmdline shows pid 1)
    init = "hostname >/p; head -c 7 /proc/1/cmdline >>/p; mv /p /probe; exec sleep 600"
    await cnode.run(f"vm config init /bin/sh -c '{init}'")
    assert await cnode.errors("vm launch container p0") == []
    rt = runtime(cnode, "p0")
    assert rt.cgroup is not None
    freezer = Path(rt.cgroup.main) / "freezer.state"
    probe = Path(rt.effective_path) / "probe"
    # frozen just before exec: init has not run
    assert freezer.read_text().strip() == "FROZEN"
    assert not probe.exists()
    assert await cnode.errors("vm start p0") == []
    assert freezer.read_text().strip() == "THAWED"
    await wait_for(probe.exists, "probe")
    # the hostname defaults to the VM's name; pid 1 is init
    assert probe.read_text() == "p0\n/bin/sh"
    # the filesystem itself is unchanged: the write went to the overlay's upper dir
    assert not (minicccfs / "probe").exists()
    assert (Path(rt.path) / "fs_work").is_dir()
    assert await cnode.errors("vm stop p0") == []
    assert freezer.read_text().strip() == "FROZEN"
    assert await column(cnode, "state") == {"p0": "PAUSED"}
    assert await cnode.errors("vm start p0") == []
    assert freezer.read_text().strip() == "THAWED"


async def test_kill_and_flush_leave_nothing_behind(cnode: MiniNode, minicccfs: Path) -> None:
    before = snapshot_tree(minicccfs)
    await cnode.run(f"vm config filesystem {minicccfs}")
    await cnode.run("vm config init /bin/sh -c 'touch /scribble; rm -f /init; exec sleep 600'")
    assert await cnode.errors("vm launch container k[0-1]") == []
    assert await cnode.errors("vm start all") == []
    rts = {name: runtime(cnode, name) for name in ("k0", "k1")}
    vms = {name: vm_named(cnode, name) for name in ("k0", "k1")}
    pids = {name: vm.pid for name, vm in vms.items()}
    cgroups = {name: rt.cgroup.paths for name, rt in rts.items() if rt.cgroup}
    fs_mounts = {name: rt.effective_path for name, rt in rts.items()}
    netns = {name: rt.netns for name, rt in rts.items()}
    await wait_for(
        lambda: all(exists(os.path.join(p, "scribble")) for p in fs_mounts.values()),
        "scribbles",
    )

    assert await cnode.errors("vm kill k0") == []
    assert not alive(pids["k0"])
    assert not any(exists(p) for p in cgroups["k0"])
    assert not exists(os.path.join(NETNS_DIR, netns["k0"]))
    assert not exists(os.path.join(rts["k0"].path, "console"))
    # killed, not flushed: the overlay (and what the container wrote) stays for a restart
    assert mounted(fs_mounts["k0"])
    assert alive(pids["k1"])

    assert await cnode.errors("vm flush") == []
    assert not mounted(fs_mounts["k0"])
    assert not exists(rts["k0"].path)
    assert await column(cnode, "state") == {"k1": "RUNNING"}

    assert await cnode.errors("clear all") == []
    assert not alive(pids["k1"])
    assert not mounted(fs_mounts["k1"])
    assert not any(exists(p) for p in cgroups["k1"])
    assert not exists(rts["k1"].path)
    # the filesystem never changed, though both containers wrote and deleted in it
    assert snapshot_tree(minicccfs) == before


async def test_limits_are_set_in_the_cgroups(cnode: MiniNode, minicccfs: Path) -> None:
    await cnode.run(f"vm config filesystem {minicccfs}")
    await cnode.run("vm config memory 96")
    await cnode.run("vm config vcpus 2")
    assert await cnode.errors("vm launch container lim") == []
    rt = runtime(cnode, "lim")
    assert rt.cgroup is not None
    assert rt.cgroup.version == 1
    pid = vm_named(cnode, "lim").pid
    for path in rt.cgroup.paths:
        assert str(pid) in read(path, "cgroup.procs").split()
    assert int(read(rt.cgroup.dirs["memory"], "memory.limit_in_bytes")) == 96 * 1024 * 1024
    cpu = rt.cgroup.dirs["cpu"]
    assert int(read(cpu, "cpu.cfs_quota_us")) == 2 * int(read(cpu, "cpu.cfs_period_us"))
    devices = read(rt.cgroup.dirs["devices"], "devices.list").splitlines()
    assert "c 1:3 rwm" in devices
    assert "a *:* rwm" not in devices


async def test_volumes_fifos_preinit_and_uuid(
    cnode: MiniNode, minicccfs: Path, tmp_path: Path
) -> None:
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "tumbleweed").write_text("rolling\n")
    marker = tmp_path / "preinit.out"
    preinit = tmp_path / "preinit.sh"
    # preinit runs as root before isolation: host paths, the container's hostname
    preinit.write_text(f"#!/bin/sh\nhostname > {marker}\n")
    preinit.chmod(0o755)
    await cnode.run(f"vm config filesystem {minicccfs}")
    await cnode.run(f"vm config volume /scratch {vol}")
    await cnode.run("vm config fifos 2")
    await cnode.run(f"vm config preinit {preinit}")
    await cnode.run("vm config uuid 67fd0bd5-d419-4ec2-94a7-077f52450e7a")
    # a script in the volume ($VARS typed on the command line are the preprocessor's)
    (vol / "run.sh").write_text(
        "ls /scratch >/report; ls /dev/fifos >>/report; echo $MEGABUS_UUID >>/report\n"
        "cat /dev/fifos/fifo0 >>/report; exec sleep 600\n"
    )
    await cnode.run("vm config init /bin/sh /scratch/run.sh")
    assert await cnode.errors("vm launch container vol0") == []
    assert marker.read_text() == "vol0\n"
    rt = runtime(cnode, "vol0")
    assert (Path(rt.path) / "uuid").read_text() == "67fd0bd5-d419-4ec2-94a7-077f52450e7a\n"
    assert await cnode.errors("vm start vol0") == []

    def feed() -> None:
        with open(Path(rt.path) / "fifo0", "w") as f:  # blocks until the container reads
            f.write("through the fifo\n")

    await asyncio.wait_for(asyncio.to_thread(feed), 30)
    report = Path(rt.effective_path) / "report"
    await wait_for(lambda: "through the fifo" in report.read_text(), "report")
    assert report.read_text() == (
        "run.sh\ntumbleweed\nfifo0\nfifo1\n67fd0bd5-d419-4ec2-94a7-077f52450e7a\nthrough the fifo\n"
    )
    assert (await column(cnode, "volume"))["vol0"] == f'{{"/scratch":"{vol}"}}'


async def test_bad_input_gets_clear_errors(
    cnode: MiniNode, minicccfs: Path, tmp_path: Path
) -> None:
    assert await cnode.errors("vm launch container nofs") == [
        "unable to create container without a configured filesystem"
    ]
    assert await cnode.text("vm info") == ""
    await cnode.run(f"vm config filesystem {tmp_path}/missing")
    errs = await cnode.errors("vm launch container gone")
    assert errs == [f"vm gone: overlayMount: stat {tmp_path}/missing: no such file or directory"]
    assert await column(cnode, "state") == {"gone": "ERROR"}
    assert await cnode.errors("vm flush") == []

    # a preinit that fails stops the launch with its output
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\necho nope\nexit 3\n")
    bad.chmod(0o755)
    await cnode.run(f"vm config filesystem {minicccfs}")
    await cnode.run(f"vm config preinit {bad}")
    errs = await cnode.errors("vm launch container pre")
    assert errs == ["vm pre: containerPreinit: exit status 3: nope"]
    assert await column(cnode, "state") == {"pre": "ERROR"}
    assert not alive(vm_named(cnode, "pre").pid)
    await cnode.run("clear vm config preinit")

    # an init that does not exist: the container ends at start, in ERROR
    await cnode.run("vm config init /no/such/init")
    assert await cnode.errors("vm launch container noinit") == []
    assert await cnode.errors("vm start noinit") == []
    await wait_for(lambda: vm_named(cnode, "noinit").state.name == "ERROR", "ERROR")
    assert vm_named(cnode, "noinit").tags["error"] == "killed container: exit status 1"

    # two containers cannot share a filesystem without snapshots
    assert await cnode.errors("vm flush") == []
    await cnode.run("clear vm config init")
    await cnode.run("vm config snapshot false")
    assert await cnode.errors("vm launch container shared") == []
    errs = await cnode.errors("vm launch container shared2")
    assert errs == [f"vm shared2: filesystem conflict with vm shared: {minicccfs}"]
    # the node still serves
    assert await cnode.text("echo alive") == "alive"


async def test_a_kill_during_a_launch_waits_for_it(
    cnode: MiniNode, minicccfs: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    preinit = tmp_path / "wait.sh"
    preinit.write_text(f"#!/bin/sh\nwhile [ ! -e {gate} ]; do sleep 0.05; done\n")
    preinit.chmod(0o755)
    await cnode.run(f"vm config filesystem {minicccfs}")
    await cnode.run(f"vm config preinit {preinit}")
    launch = asyncio.create_task(cnode.errors("vm launch container slow"))
    await wait_for(lambda: any(vm.name == "slow" for vm in cnode.state.vms.vms.values()), "vm")
    kill = asyncio.create_task(cnode.errors("vm kill slow"))
    await asyncio.sleep(0)  # let the kill reach the VM's lock while preinit holds the launch
    assert not kill.done()
    gate.write_text("")
    assert await launch == []
    assert await kill == []
    vm = vm_named(cnode, "slow")
    assert vm.state.name == "QUIT"
    assert not alive(vm.pid)
