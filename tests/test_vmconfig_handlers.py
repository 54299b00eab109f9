"""``vm config`` as a user types it: compiled lines, real VLAN store on a real nats-server.

The minimega 2.8 compat scripts ``vm_config`` and ``vm_config_save`` are
replayed line by line and must come out byte for byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from megabus.bus.connection import Bus
from megabus.bus.errors import CommandError
from megabus.bus.messages import Flags, Response
from megabus.config.settings import Settings
from megabus.handlers.commands import vm_config
from megabus.handlers.language.command import Command
from megabus.handlers.language.grammar import Grammar
from megabus.handlers.language.render import minitest
from megabus.handlers.model.bondspec import parse_bondspecs
from megabus.handlers.model.config import VMConfig
from megabus.handlers.model.netspec import resolve_netspecs
from megabus.handlers.model.vm import VM, VMType
from megabus.handlers.net._vlanstore import VlanStore
from megabus.handlers.node import registry
from megabus.handlers.node.context import Context
from megabus.handlers.node.state import NodeState

FLAGS = Flags(annotate=False)


class Shell:
    """Runs lines against the ``vm config`` handlers of one node."""

    def __init__(self, state: NodeState) -> None:
        self.state = state
        self.namespace = "minimega"
        self.grammar = Grammar()
        for handler in registry.HANDLERS:
            if handler.func.__module__ == vm_config.__name__:
                self.grammar.add(handler, handler.patterns)

    def context(self) -> Context:
        async def unused(*_: object) -> list[list[Response]]:
            raise AssertionError("vm config runs no nested commands")

        async def emit(_: list[Response]) -> None:
            raise AssertionError("vm config emits nothing early")

        return Context(self.state, self.namespace, None, unused, unused, emit)

    async def responses(self, line: str) -> list[Response]:
        cmd = self.grammar.compile(line)
        assert isinstance(cmd, Command)
        ctx = self.context()
        try:
            result = await cmd.handler.func(ctx, cmd)
        except CommandError as err:
            return [ctx.error(str(err))]
        if result is None:
            return [ctx.respond()]
        return [result] if isinstance(result, Response) else list(result)

    async def out(self, line: str) -> str:
        """What minitest records for ``line``: ``E:`` lines, then the text."""
        return minitest(await self.responses(line), FLAGS)

    async def replay(self, script: str) -> str:
        out: list[str] = []
        for line in script.splitlines():
            if not line.strip():
                out.append("\n")
                continue
            out.append(f"## {line}\n")
            if line.lstrip().startswith("#"):
                continue
            out.append(await self.out(line))
        return "".join(out)

    @property
    def config(self) -> VMConfig:
        return self.state.namespace(self.namespace).vm_config


@pytest.fixture
async def shell(bus: Bus) -> AsyncIterator[Shell]:
    store = await VlanStore.open(bus, (101, 4096))
    try:
        yield Shell(NodeState(settings=Settings(base="/tmp/minimega", name="n1"), vlans=store))
    finally:
        await store.close()


@pytest.mark.parametrize("name", ["vm_config", "vm_config_save"])
async def test_compat_scripts(shell: Shell, name: str, compat_dir: Path) -> None:
    script = (compat_dir / name).read_text()
    want = (compat_dir / f"{name}.want").read_text()
    assert await shell.replay(script) == want


def test_all_81_patterns_are_registered() -> None:
    patterns = [
        p for h in registry.HANDLERS if h.func.__module__ == vm_config.__name__ for p in h.patterns
    ]
    assert len(patterns) == len(set(patterns)) == 81
    assert "vm config bonds [bondspec]..." in patterns
    assert "clear vm config <usb-use-xhci,>" in patterns


async def test_networks_allocate_aliases_per_namespace(shell: Shell) -> None:
    assert await shell.out("vm config net 101") == ""
    assert await shell.out("vm config net A") == ""
    assert await shell.out("vm config net") == "[A]\n"
    assert shell.config.networks[0].vlan == 102
    assert await shell.out("vm config net B A") == ""
    assert [n.vlan for n in shell.config.networks] == [103, 102]
    shell.namespace = "foo"
    assert await shell.out("vm config net A") == ""
    assert shell.config.networks[0].vlan == 104
    assert await shell.out("vm config net minimega//A") == ""
    assert await shell.out("vm config net") == "[minimega//A]\n"
    assert shell.config.networks[0].vlan == 102


async def test_bad_netspec_clears_networks(shell: Shell) -> None:
    await shell.out("vm config net A")
    assert await shell.out("vm config net a,b,c,d,e,f") == "E: malformed netspec\n"
    assert await shell.out("vm config net") == "[]\n"


async def test_netspec_driver_from_qemu(shell: Shell) -> None:
    # kvm (qemu-system-x86) lists its NICs with -device ?
    assert await shell.out("vm config net br,100,00:11:22:33:44:55,virtio-net-pci,qinq") == ""
    assert await shell.out("vm config net") == "[br,100,00:11:22:33:44:55,virtio-net-pci,qinq]\n"


async def test_bonds(shell: Shell) -> None:
    assert await shell.out("vm config bonds") == "[]\n"
    assert await shell.out("vm config bonds 0,1,2,balance-slb,passive bogus") == (
        "E: malformed bondspec\n"
    )
    assert await shell.out("vm config bonds") == "[]\n"
    assert await shell.out("vm config bonds 0,1,2,balance-slb,passive 3,4,active-backup") == ""
    assert await shell.out("vm config bonds") == "[0,1,2,balance-slb,passive 3,4,active-backup]\n"
    assert await shell.out("clear vm config bonds") == ""
    assert await shell.out("vm config bonds") == "[]\n"


async def test_disk_errors(shell: Shell) -> None:
    assert await shell.out("vm config disks a,bogus") == "E: malformed diskspec\n"
    assert await shell.out("vm config disks a a,virtio") == (
        "E: disk conflict: /tmp/minimega/files/a\n"
    )
    assert await shell.out("vm config disks") == "[]\n"
    assert await shell.out("vm config disks /x/a.qcow2,virtio,none") == ""
    assert await shell.out("vm config disks") == "[/x/a.qcow2,virtio,none]\n"


SCALARS = [
    # field, value set, shown, default shown
    ("uuid", "abc", "abc", ""),
    ("vcpus", "4", "4", "1"),
    ("memory", "1024", "1024", "2048"),
    ("schedule", "localhost", "localhost", ""),
    ("colocate", "vm1", "vm1", ""),
    ("coschedule", "-5", "-5", "-1"),
    ("qemu", "/usr/bin/kvm", "/usr/bin/kvm", "kvm"),
    ("kernel", "k", "/tmp/minimega/files/k", ""),
    ("initrd", "/i", "/i", ""),
    ("cdrom", "c.iso", "/tmp/minimega/files/c.iso", ""),
    ("migrate", "m", "/tmp/minimega/files/m", ""),
    ("sockets", "2", "2", "0"),
    ("cores", "2", "2", "0"),
    ("threads", "2", "2", "0"),
    ("serial-ports", "3", "3", "0"),
    ("virtio-ports", "foo,bar", "foo,bar", ""),
    ("vga", "cirrus", "cirrus", "std"),
    ("tpm-socket", "tpm", "/tmp/minimega/files/tpm", ""),
    ("filesystem", "fs", "/tmp/minimega/files/fs", ""),
    ("hostname", "h", "h", ""),
    ("preinit", "p.sh", "p.sh", ""),
    ("fifos", "2", "2", "0"),
]


@pytest.mark.parametrize(("field", "value", "shown", "default"), SCALARS)
async def test_scalar_get_set_clear(
    shell: Shell, field: str, value: str, shown: str, default: str
) -> None:
    def text(v: str) -> str:
        return f"{v}\n" if v else ""

    assert await shell.out(f"vm config {field}") == text(default)
    assert await shell.out(f"vm config {field} {value}") == ""
    assert await shell.out(f"vm config {field}") == text(shown)
    assert await shell.out(f"clear vm config {field}") == ""
    assert await shell.out(f"vm config {field}") == text(default)


@pytest.mark.parametrize(
    ("field", "default"),
    [("snapshot", "true"), ("backchannel", "true"), ("usb-use-xhci", "true")],
)
async def test_bool_get_set_clear(shell: Shell, field: str, default: str) -> None:
    assert await shell.out(f"vm config {field}") == f"{default}\n"
    assert await shell.out(f"vm config {field} false") == ""
    assert await shell.out(f"vm config {field}") == "false\n"
    await shell.out(f"clear vm config {field}")
    assert await shell.out(f"vm config {field}") == f"{default}\n"


@pytest.mark.parametrize(
    ("field", "default"), [("append", ""), ("qemu-append", ""), ("init", "[/init]\n")]
)
async def test_list_get_set_clear(shell: Shell, field: str, default: str) -> None:
    assert await shell.out(f"vm config {field}") == default
    assert await shell.out(f"vm config {field} a b c") == ""
    assert await shell.out(f"vm config {field}") == "[a b c]\n"
    await shell.out(f"clear vm config {field}")
    assert await shell.out(f"vm config {field}") == default


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("vm config memory foo", 'strconv.ParseUint: parsing "foo": invalid syntax'),
        ("vm config vcpus -1", 'strconv.ParseUint: parsing "-1": invalid syntax'),
        (
            "vm config fifos 18446744073709551616",
            'strconv.ParseUint: parsing "18446744073709551616": value out of range',
        ),
        ("vm config coschedule x", 'strconv.ParseInt: parsing "x": invalid syntax'),
        ("vm config schedule elsewhere", "host is not in namespace: elsewhere"),
        ("vm config restore nope", "config nope does not exist"),
        ("vm config restore", "no vm configs saved"),
        ("vm config clone vm1", "vm not found: vm1"),
    ],
)
async def test_errors(shell: Shell, line: str, error: str) -> None:
    before = shell.config.copy()
    assert await shell.out(line) == f"E: {error}\n"
    assert shell.config == before


async def test_schedule_and_colocate_exclude_each_other(shell: Shell) -> None:
    await shell.out("vm config schedule n1")
    assert await shell.out("vm config colocate vm1") == (
        "E: cannot specify colocate and schedule in the same config\n"
    )
    await shell.out("clear vm config schedule")
    await shell.out("vm config colocate vm1")
    assert await shell.out("vm config schedule n1") == (
        "E: cannot specify schedule and colocate in the same config\n"
    )


async def test_cpu_and_machine_checked_against_qemu(shell: Shell) -> None:
    assert await shell.out("vm config cpu bogus-cpu") == "E: invalid cpu: bogus-cpu\n"
    assert await shell.out("vm config cpu qemu64") == ""
    assert await shell.out("vm config cpu") == "qemu64\n"
    assert await shell.out("vm config machine bogus") == "E: invalid machine: bogus\n"
    assert await shell.out("vm config machine pc") == ""
    assert await shell.out("vm config machine") == "pc\n"


async def test_tags_and_volumes(shell: Shell) -> None:
    assert await shell.out("vm config tags") == ""
    await shell.out("vm config tags b 2")
    await shell.out("vm config tags a 1")
    assert await shell.out("vm config tags") == "a -> 1\nb -> 2\n"
    assert await shell.out("vm config tags a") == "1\n"
    assert await shell.out("clear vm config tag a") == ""
    assert await shell.out("vm config tags") == "b -> 2\n"
    await shell.out("vm config tags c 3")
    await shell.out("clear vm config tag all")
    assert shell.config.tags == {}

    await shell.out("vm config volume /scratch /tmp/minivolume")
    await shell.out("vm config volume /data data")
    assert await shell.out("vm config volume") == (
        "/data -> /tmp/minimega/files/data\n/scratch -> /tmp/minivolume\n"
    )
    assert await shell.out("vm config volume /scratch") == "/tmp/minivolume\n"
    await shell.out("clear vm config volume")
    assert await shell.out("vm config volume") == ""


async def test_restore_lists_saved_configs(shell: Shell) -> None:
    await shell.out("vm config save b")
    await shell.out("vm config memory 1")
    await shell.out("vm config save a")
    assert await shell.out("vm config restore") == "a\nb\n"
    await shell.out("vm config restore b")
    assert shell.config.memory == 2048


async def test_clone_copies_a_vm_of_the_namespace(shell: Shell) -> None:
    source = VMConfig(uuid="u1", memory=512)
    source.networks = await resolve_netspecs(["A,qinq"], frozenset(), _fixed)
    source.bonds = parse_bondspecs(["0,1,balance-slb"])
    vm = VM(
        id=7,
        name="vm1",
        namespace="minimega",
        type=VMType.KVM,
        config=source,
        uuid="u1",
        instance_path="/nonexistent/7",
    )
    shell.state.vms.add(vm)
    assert await shell.out("vm config clone vm1") == ""
    assert shell.config.uuid == ""
    assert shell.config.memory == 512
    assert await shell.out("vm config net") == "[A,qinq]\n"
    assert shell.config.networks[0].vlan == 101
    assert await shell.out("vm config bonds") == "[0,1,balance-slb]\n"
    errs = [r.error for r in await shell.responses("vm config clone nosuch")]
    assert errs == ["vm not found: nosuch"]


async def _fixed(text: str) -> int:
    return 999


async def test_qemu_override_list_and_add(shell: Shell) -> None:
    # 2.8's real line for a default VM, before and after an override
    line = (
        "-name 0 -m 2048 -nographic -vnc unix:vnc -smp 1 -qmp unix:qmp,server=on -vga std "
        "-rtc clock=vm,base=utc -usb -device qemu-xhci,id=xhci -device usb-tablet,bus=usb-bus.0 "
        "-pidfile qemu.pid -k en-us -cpu host -net none -S -drive media=cdrom "
        "-device pci-bridge,id=pci.1,chassis_nr=1 "
        "-device virtio-serial-pci,id=virtio-serial0,bus=pci.1,addr=0x1 "
        "-chardev socket,id=charvserialCC,path=cc,server=on,wait=off "
        "-device virtserialport,bus=virtio-serial0.0,chardev=charvserialCC,"
        "id=charvserialCC,name=cc -uuid"
    )
    assert await shell.out("vm config qemu-override") == (
        f"id\tmatch\treplacement\n\nBefore overrides:\n{line}\n\nAfter overrides:\n{line}\n"
    )
    await shell.out('vm config qemu-override "-m 2048" "-m 4096"')
    after = line.replace("-m 2048", "-m 4096")
    assert await shell.out("vm config qemu-override") == (
        'id\tmatch\treplacement\n0\t"-m 2048"\t"-m 4096"\n'
        f"\nBefore overrides:\n{line}\n\nAfter overrides:\n{after}\n"
    )
    await shell.out("clear vm config qemu-override")
    assert shell.config.qemu_override == []
