#!/usr/bin/env python3
"""A lab of megabus hosts on one machine: each a network namespace with its own switch and node.

    ops/lab.py up 3          three hosts mm1..mm3, a three-server NATS hub, all wired
    ops/lab.py add           one more host (mm4), joins the running cluster at once
    ops/lab.py kill mm2      SIGKILL a host's node (the host "leaves"; its switch stays)
    ops/lab.py kill-hub 1    SIGKILL one NATS hub (the other two keep JetStream going)
    ops/lab.py status        the lab as JSON (hosts, addresses, pids, NATS URLs)
    ops/lab.py down          stop every node, switch and hub; remove the namespaces

What a host is (``mm<i>``, in network namespace ``<lab>-mm<i>``):

* two veth "NICs": ``eth0``, the management/underlay link (address
  ``<net>.<i>``, NATS and tunnels go over it) and ``eth1``, the trunk
  (no address; ``bridge trunk mega_bridge eth1`` puts a host's VLANs on it).
  Their other ends sit on two Linux bridges of the root namespace, the
  lab's "switches": ``<lab>-net`` (address ``<net>.254``, the hubs listen
  there) and ``<lab>-tr``, which forwards tagged frames as a physical
  switch's trunk ports would;
* its own Open vSwitch (``ops/ovs.sh`` with ``MEGABUS_OVS_RUNDIR`` =
  ``<dir>/<host>/ovs``, userspace datapath), never the machine's shared
  one. The userspace datapath builds tunnel packets itself and sends them
  only through a bridge it owns, so ``eth0`` is a port of the OVS bridge
  ``phy`` and the host's address sits on ``phy``; the underlay MTU is 9000
  so that VXLAN/GRE frames carrying 1500-byte guest frames pass whole;
* its own ``megabus node -name mm<i>`` in the namespace and a mount
  namespace of its own, where ``/sys`` is the namespace's (tap names do not
  collide between hosts; the cgroup hierarchies are bound back), host names
  resolve to their ``eth0`` addresses (``/etc/hosts``) and
  ``/root`` is an overlay that adds ``/root/uminicccfs`` (minimega 2.8's
  distributed scripts name it) over the real ``/root``.

NATS: hub servers (a routed JetStream cluster, three by default, so the
VLAN bucket and the cc stream are kept three times and losing one hub
loses nothing) listen on the root side at ``<net>.254``; every node talks
to the hubs directly, not through a per-host leaf server: nats-server
refuses plain ``$JS.API`` traffic over a leaf connection (nats-server
#2693) and the bus does not speak JetStream domains yet (ops/nats/README.md
says what that costs). Hub servers run without login: they listen only on
the lab's own bridge.

Veth ends on the root side have TX checksum offload off: the userspace
datapath reads frames with AF_PACKET and passes partial checksums on as
they are, so TCP from the root side (the hubs) would arrive corrupt.

Needs root, iproute2, openvswitch-switch and util-linux (``mount``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OVS_SH = REPO / "ops" / "ovs.sh"
MEGABUS = Path(sys.executable).parent / "megabus"
IMAGES = Path(os.environ.get("images") or REPO / "build" / "images")  # noqa: SIM112 (2.8's name)
DEFAULT_DIR = Path("/tmp/megabus-lab")
MTU = 9000
#: Seconds a node, a hub or JetStream may take to come up or go away.
WAIT = 60.0
_TX_CSUM = ("tx-checksum-ip-generic", "tx-checksum-ipv4", "tx-checksum-ipv6", "tx-checksum-sctp")


class LabError(Exception):
    """A step of the lab failed; the message says which."""


@dataclass
class Host:
    name: str
    index: int
    netns: str
    ip: str
    base: str
    rundir: str
    pid: int = 0


@dataclass
class Lab:
    name: str
    dir: str
    net: str
    port: int
    hub_pids: list[int] = field(default_factory=list)
    hosts: dict[str, Host] = field(default_factory=dict)
    prefix: str = "mm"
    heartbeat: float = 2.0
    level: str = "info"
    #: the nodes' ``-accel`` (``tcg`` where KVM cannot boot a guest kernel); "" for their default
    accel: str = ""

    @property
    def hub_ip(self) -> str:
        return f"{self.net}.254"

    @property
    def urls(self) -> list[str]:
        return [f"nats://{self.hub_ip}:{self.port + i}" for i in range(len(self.hub_pids))]

    @property
    def state_file(self) -> Path:
        return Path(self.dir) / "lab.json"

    def save(self) -> None:
        Path(self.dir).mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, directory: Path) -> Lab:
        try:
            raw = json.loads((directory / "lab.json").read_text())
        except FileNotFoundError:
            raise LabError(f"no lab in {directory} (ops/lab.py up N first)") from None
        hosts = {k: Host(**v) for k, v in raw.pop("hosts").items()}
        return cls(**raw, hosts=hosts)


# -- small helpers ------------------------------------------------------------------


def sh(*argv: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    """Run a program (no shell); its output. A failure is a LabError naming the command."""
    run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=WAIT, check=False)
    if check and run.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {(run.stdout + run.stderr).strip()}")
    return run.stdout


def in_ns(host: Host, *argv: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    return sh("ip", "netns", "exec", host.netns, *argv, env=env, check=check)


def vsctl(host: Host, *args: str) -> str:
    return in_ns(host, "ovs-vsctl", f"--db=unix:{host.rundir}/db.sock", "--timeout=30", *args)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_pid(pid: int, grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if not pid or not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while alive(pid) and time.monotonic() < deadline + 5:
        time.sleep(0.05)


def no_tx_checksum(ifname: str) -> None:
    from pyroute2.ethtool import Ethtool

    ethtool = Ethtool()
    try:
        features = ethtool.get_features(ifname)
        for name in _TX_CSUM:
            if name in features.features:
                features.features[name].enable = False
        ethtool.set_features(ifname, features)
    finally:
        ethtool.close()


# -- NATS hubs ----------------------------------------------------------------------


def hub_config(lab: Lab, i: int, count: int) -> str:
    routes = "\n".join(
        f"    nats://{lab.hub_ip}:{lab.port + 100 + j}" for j in range(count) if j != i
    )
    store = Path(lab.dir) / f"hub{i + 1}"
    cluster = (
        f"cluster {{\n  name: {lab.name}\n  listen: {lab.hub_ip}:{lab.port + 100 + i}\n"
        f"  routes: [\n{routes}\n  ]\n}}\n"
        if count > 1
        else ""
    )
    return (
        f"server_name: {lab.name}-hub{i + 1}\nlisten: {lab.hub_ip}:{lab.port + i}\n"
        f"max_payload: 16MB\njetstream {{\n  store_dir: {store}\n}}\n{cluster}"
    )


def start_hubs(lab: Lab, count: int) -> None:
    from megabus.bus.server import server_binary

    binary = server_binary()
    for i in range(count):
        conf = Path(lab.dir) / f"hub{i + 1}.conf"
        conf.write_text(hub_config(lab, i, count))
        log = open(Path(lab.dir) / f"hub{i + 1}.log", "ab")  # noqa: SIM115 (the child keeps it)
        proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        lab.hub_pids.append(proc.pid)
    lab.save()
    asyncio.run(_wait_jetstream(lab.urls, replicas=count))


async def _wait_jetstream(urls: list[str], replicas: int) -> None:
    """Until the hubs place a stream of ``replicas`` copies (every peer has joined)."""
    import nats
    import nats.errors
    import nats.js.errors

    async with asyncio.timeout(WAIT):
        while True:
            try:
                nc = await nats.connect(urls, connect_timeout=2, max_reconnect_attempts=0)
                break
            except (OSError, nats.errors.Error):
                await asyncio.sleep(0.2)
        try:
            js = nc.jetstream(timeout=2.0)
            while True:
                try:
                    await js.add_stream(name="lab_probe", subjects=["lab.probe"],
                                        num_replicas=replicas)  # fmt: skip
                    await js.delete_stream("lab_probe")
                    return
                except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
                    await asyncio.sleep(0.3)
        finally:
            await nc.close()


# -- hosts --------------------------------------------------------------------------


def new_host(lab: Lab, index: int) -> Host:
    name = f"{lab.prefix}{index}"
    top = Path(lab.dir) / name
    return Host(
        name=name, index=index, netns=f"{lab.name}-{name}", ip=f"{lab.net}.{index}",
        base=str(top / "base"), rundir=str(top / "ovs"),
    )  # fmt: skip


def wire_root(lab: Lab) -> None:
    for br, addr in ((f"{lab.name}-net", f"{lab.hub_ip}/24"), (f"{lab.name}-tr", "")):
        sh("ip", "link", "add", br, "mtu", str(MTU), "type", "bridge")
        sh("ip", "link", "set", br, "up")
        if addr:
            sh("ip", "addr", "add", addr, "dev", br)


def wire_host(lab: Lab, host: Host) -> None:
    """The namespace, its two NICs, its switch with ``phy`` holding the address."""
    sh("ip", "netns", "add", host.netns)
    in_ns(host, "ip", "link", "set", "lo", "up")
    for suffix, inner, br in (("", "eth0", f"{lab.name}-net"), ("t", "eth1", f"{lab.name}-tr")):
        outer = f"{lab.name}-{host.name}{suffix}"
        if len(outer) > 15:
            raise LabError(f"link name {outer} is over 15 characters: use a shorter --name")
        sh("ip", "link", "add", outer, "mtu", str(MTU), "type", "veth",
           "peer", "name", inner, "mtu", str(MTU), "netns", host.netns)  # fmt: skip
        sh("ip", "link", "set", outer, "master", br, "up")
        no_tx_checksum(outer)
        in_ns(host, "ip", "link", "set", inner, "up")
    Path(host.rundir).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MEGABUS_OVS_RUNDIR": host.rundir}
    env.pop("OVS_RUNDIR", None)
    in_ns(host, str(OVS_SH), "start", env=env)
    vsctl(host, "add-br", "phy", "--", "set", "bridge", "phy", "datapath_type=netdev",
          "--", "add-port", "phy", "eth0", "--", "set", "interface", "phy",
          f"mtu_request={MTU}")  # fmt: skip
    in_ns(host, "ip", "link", "set", "phy", "up")
    in_ns(host, "ip", "addr", "add", f"{host.ip}/24", "dev", "phy")


#: Run in the host's network namespace and a mount namespace of its own
#: (``nsenter`` + ``unshare``): a sysfs of this network namespace on ``/sys``
#: (tap names come from ``/sys/class/net``) with the machine's cgroup
#: hierarchies bound back under it (containers need them), the lab's hosts
#: file on ``/etc/hosts`` (``ns bridge`` resolves host names), and ``/root``
#: overlaid with the lab's additions; then the node replaces the shell.
_HOST_MOUNTS = """set -e
top=$1; shift
mount --rbind /sys/fs/cgroup "$top/cgroup"
mount -t sysfs sysfs /sys
mount --rbind "$top/cgroup" /sys/fs/cgroup
mount --bind "$top/../hosts" /etc/hosts
o="lowerdir=/root,upperdir=$top/rootfs/upper,workdir=$top/rootfs/work"
mount -t overlay overlay -o "$o" /root
exec "$@"
"""


def start_node(lab: Lab, host: Host) -> None:
    top = Path(host.base).parent
    overlay = top / "rootfs"
    for sub in (overlay / "upper", overlay / "work", top / "cgroup"):
        sub.mkdir(parents=True, exist_ok=True)
    link = overlay / "upper" / "uminicccfs"
    if not link.is_symlink() and (IMAGES / "minicccfs").is_dir():
        link.symlink_to(IMAGES / "minicccfs")
    env = {**os.environ, "MEGABUS_OVS_RUNDIR": host.rundir, "images": str(IMAGES)}
    for var in ("OVS_RUNDIR", "MEGABUS_NATS", "MEGABUS_BASE", "MEGABUS_OVS_DB"):
        env.pop(var, None)
    info = Path(host.base) / "megabus.json"
    info.unlink(missing_ok=True)
    log = open(top / "node.log", "ab")  # noqa: SIM115 (the child keeps it)
    proc = subprocess.Popen(
        ["nsenter", f"--net=/var/run/netns/{host.netns}", "--", "unshare", "--mount",
         "--propagation", "slave", "sh", "-c", _HOST_MOUNTS, "sh", str(top),
         str(MEGABUS), "node", "-name", host.name, "-nats", ",".join(lab.urls),
         "-base", host.base, "-heartbeat", str(lab.heartbeat), "-level", lab.level,
         *(["-accel", lab.accel] if lab.accel else [])],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
    )  # fmt: skip
    host.pid = proc.pid
    lab.save()
    deadline = time.monotonic() + WAIT
    while not info.exists():
        if proc.poll() is not None:
            raise LabError(f"node {host.name} exited ({proc.returncode}): see {top}/node.log")
        if time.monotonic() > deadline:
            raise LabError(f"node {host.name} did not start within {WAIT:g}s: see {top}/node.log")
        time.sleep(0.1)


def write_hosts_file(lab: Lab) -> None:
    """The machine's hosts file plus one line per lab host, rewritten in place.

    In place (same inode), so every host's bind mount sees a host that joins.
    """
    base = Path("/etc/hosts").read_text()
    lines = [f"{h.ip}\t{h.name}\n" for h in lab.hosts.values()]
    with open(Path(lab.dir) / "hosts", "a+") as f:
        f.seek(0)
        f.truncate()
        f.write(base.rstrip("\n") + "\n# megabus lab\n" + "".join(lines))


def add_host(lab: Lab) -> Host:
    index = max((h.index for h in lab.hosts.values()), default=0) + 1
    host = new_host(lab, index)
    lab.hosts[host.name] = host
    lab.save()
    write_hosts_file(lab)
    wire_host(lab, host)
    start_node(lab, host)
    return host


def _clear_old_files(lab: Lab) -> None:
    """What an earlier lab in this folder left (its logs stay until the next ``up``)."""
    top = Path(lab.dir)
    if not top.is_dir():
        return
    for entry in top.iterdir():
        if re.fullmatch(rf"hub\d+(\.conf|\.log)?|{re.escape(lab.prefix)}\d+", entry.name):
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def up(lab: Lab, count: int, hubs: int) -> None:
    if lab.state_file.exists():
        raise LabError(f"a lab is up in {lab.dir}: ops/lab.py down first")
    if shutil.which("ovs-vswitchd") is None:
        raise LabError("Open vSwitch is not installed: apt-get install -y openvswitch-switch")
    _clear_old_files(lab)
    lab.save()
    try:
        wire_root(lab)
        start_hubs(lab, hubs)
        for _ in range(count):
            add_host(lab)
    except BaseException:
        down(lab)
        raise


# -- taking it apart ------------------------------------------------------------------


def _pids_in(netns: str) -> list[int]:
    out = sh("ip", "netns", "pids", netns, check=False)
    return [int(p) for p in out.split()]


def _pids_under(path: str) -> list[int]:
    """Processes whose root, cwd or command line names ``path`` (what a killed node left)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (path + "/").encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
                continue
        for link in ("root", "cwd"):
            with contextlib.suppress(OSError):
                if os.readlink(entry / link).startswith(path + "/"):
                    found.append(int(entry.name))
                    break
    return found


def _thaw(pid: int) -> None:
    """A container launched but never started sits in a frozen cgroup: no signal reaches it."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "freezer" in controllers.split(","):
                Path(f"/sys/fs/cgroup/freezer{path}/freezer.state").write_text("THAWED")
            elif controllers == "":
                Path(f"/sys/fs/cgroup{path}/cgroup.freeze").write_text("0")


def stop_host(lab: Lab, host: Host) -> None:
    stop_pid(host.pid)
    # what a killed node left running: its VMs, container monitors and containers
    for pid in {*_pids_in(host.netns), *_pids_under(host.base)}:
        if pid != os.getpid():
            _thaw(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    env = {**os.environ, "MEGABUS_OVS_RUNDIR": host.rundir}
    sh(str(OVS_SH), "stop", env=env, check=False)
    sh("ip", "netns", "del", host.netns, check=False)
    for suffix in ("", "t"):
        sh("ip", "link", "del", f"{lab.name}-{host.name}{suffix}", check=False)
    _drop_dead_netns_links()


def _drop_dead_netns_links() -> None:
    """``/var/run/netns`` symlinks of containers whose process is gone."""
    netns = Path("/var/run/netns")
    for link in netns.glob("meganet_*"):
        if link.is_symlink():
            m = re.match(r"/proc/(\d+)/", os.readlink(link))
            if m and not alive(int(m.group(1))):
                link.unlink(missing_ok=True)


def down(lab: Lab) -> None:
    for host in list(lab.hosts.values()):
        stop_host(lab, host)
    for pid in lab.hub_pids:
        stop_pid(pid, grace=10)
    for br in (f"{lab.name}-net", f"{lab.name}-tr"):
        sh("ip", "link", "del", br, check=False)
    lab.state_file.unlink(missing_ok=True)


def kill(lab: Lab, name: str) -> None:
    host = lab.hosts.get(name)
    if host is None:
        raise LabError(f"no host {name} in the lab (hosts: {', '.join(lab.hosts)})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(host.pid, signal.SIGKILL)
    while alive(host.pid):
        time.sleep(0.05)


def kill_hub(lab: Lab, number: int) -> None:
    """SIGKILL hub ``number`` (1-based): the others keep JetStream's copies."""
    if not 1 <= number <= len(lab.hub_pids):
        raise LabError(f"no hub {number} (hubs: 1..{len(lab.hub_pids)})")
    pid = lab.hub_pids[number - 1]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while alive(pid):
        time.sleep(0.05)


def restart(lab: Lab, name: str) -> None:
    host = lab.hosts.get(name)
    if host is None:
        raise LabError(f"no host {name} in the lab (hosts: {', '.join(lab.hosts)})")
    if not alive(host.pid):
        start_node(lab, host)


def describe(lab: Lab) -> dict[str, object]:
    return {
        "name": lab.name,
        "dir": lab.dir,
        "nats": ",".join(lab.urls),
        "hubs": [
            {"url": u, "pid": p, "alive": alive(p)}
            for u, p in zip(lab.urls, lab.hub_pids, strict=True)
        ],
        "hosts": {
            h.name: {
                "netns": h.netns,
                "ip": h.ip,
                "pid": h.pid,
                "alive": alive(h.pid),
                "base": h.base,
                "ovs": h.rundir,
            }
            for h in lab.hosts.values()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="lab state and host files")
    sub = parser.add_subparsers(dest="action", required=True)
    p_up = sub.add_parser("up", help="bring up N hosts")
    p_up.add_argument("count", type=int)
    p_up.add_argument("--name", default="mblab", help="namespace and link name prefix")
    p_up.add_argument("--net", default="10.77.0", help="the /24 of the underlay, e.g. 10.77.0")
    p_up.add_argument("--port", type=int, default=4301, help="first hub client port")
    p_up.add_argument("--hubs", type=int, default=3, choices=(1, 3))
    p_up.add_argument("--host-prefix", default="mm", help="host names: <prefix><i>")
    p_up.add_argument("--heartbeat", type=float, default=2.0)
    p_up.add_argument("--level", default="info", help="the nodes' log level")
    p_up.add_argument("--accel", default="", help="the nodes' -accel (auto, kvm, tcg)")
    sub.add_parser("add", help="one more host")
    p_kill = sub.add_parser("kill", help="SIGKILL a host's node")
    p_kill.add_argument("host")
    p_hub = sub.add_parser("kill-hub", help="SIGKILL one NATS hub (1..3)")
    p_hub.add_argument("hub", type=int)
    p_restart = sub.add_parser("restart", help="start a killed host's node again")
    p_restart.add_argument("host")
    sub.add_parser("status", help="the lab as JSON")
    sub.add_parser("down", help="take the lab apart")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    try:
        if args.action == "up":
            if not 1 <= args.count <= 200:
                raise LabError("N must be 1..200")
            if not re.fullmatch(r"[a-z][a-z0-9]{0,7}", args.name):
                raise LabError("--name: a lowercase letter then up to 7 letters or digits")
            lab = Lab(
                name=args.name, dir=str(directory), net=args.net, port=args.port,
                prefix=args.host_prefix, heartbeat=args.heartbeat, level=args.level,
                accel=args.accel,
            )  # fmt: skip
            up(lab, args.count, args.hubs)
            print(json.dumps(describe(lab), indent=2))
            first = next(iter(lab.hosts))
            print(f"\ntry: {MEGABUS} -nats {lab.urls[0]} -node {first} -e mesh list all",
                  file=sys.stderr)  # fmt: skip
            return 0
        lab = Lab.load(directory)
        if args.action == "add":
            host = add_host(lab)
            print(host.name)
        elif args.action == "kill":
            kill(lab, args.host)
        elif args.action == "kill-hub":
            kill_hub(lab, args.hub)
        elif args.action == "restart":
            restart(lab, args.host)
        elif args.action == "status":
            print(json.dumps(describe(lab), indent=2))
        elif args.action == "down":
            down(lab)
    except LabError as err:
        print(f"lab: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
