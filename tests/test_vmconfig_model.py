"""The ``vm config`` model on its own: specs, defaults, dump, config lines, overrides."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from megabus.bus.errors import CommandError
from megabus.handlers.model.bondspec import parse_bondspec
from megabus.handlers.model.config import CLEAR_FIELDS, QemuOverride, VMConfig
from megabus.handlers.model.diskspec import check_path, parse_diskspec, parse_diskspecs
from megabus.handlers.model.netspec import NetConfig, is_mac, parse_netspec, resolve_netspecs

NICS = frozenset({"e1000", "virtio-net-pci", "i82559c", "rtl8139"})
FILES = "/tmp/minimega/files"


# -- netspecs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "bridge", "vlan", "mac", "driver", "qinq", "canonical"),
    [
        ("100", "mega_bridge", "100", "", "e1000", False, "100"),
        ("DMZ", "mega_bridge", "DMZ", "", "e1000", False, "DMZ"),
        ("105,qinq", "mega_bridge", "105", "", "e1000", True, "105,qinq"),
        ("105,QinQ", "mega_bridge", "105", "", "e1000", True, "105,qinq"),
        ("10,B4:B6:76:69:68:68", "mega_bridge", "10", "b4:b6:76:69:68:68", "e1000", False,
         "10,b4:b6:76:69:68:68"),
        ("100,i82559c", "mega_bridge", "100", "", "i82559c", False, "100,i82559c"),
        ("bridge0,1", "bridge0", "1", "", "e1000", False, "bridge0,1"),
        ("100,00:11:22:33:44:55,qinq", "mega_bridge", "100", "00:11:22:33:44:55", "e1000",
         True, "100,00:11:22:33:44:55,qinq"),
        ("100,virtio-net-pci,qinq", "mega_bridge", "100", "", "virtio-net-pci", True,
         "100,virtio-net-pci,qinq"),
        ("br,100,qinq", "br", "100", "", "e1000", True, "br,100,qinq"),
        ("test_bridge,100,13:37:13:37:00:02", "test_bridge", "100", "13:37:13:37:00:02",
         "e1000", False, "test_bridge,100,13:37:13:37:00:02"),
        ("100,00:11:22:33:44:55,rtl8139", "mega_bridge", "100", "00:11:22:33:44:55", "rtl8139",
         False, "100,00:11:22:33:44:55,rtl8139"),
        ("br,100,rtl8139", "br", "100", "", "rtl8139", False, "br,100,rtl8139"),
        ("100,00:11:22:33:44:55,rtl8139,qinq", "mega_bridge", "100", "00:11:22:33:44:55",
         "rtl8139", True, "100,00:11:22:33:44:55,rtl8139,qinq"),
        ("br,100,00:11:22:33:44:55,qinq", "br", "100", "00:11:22:33:44:55", "e1000", True,
         "br,100,00:11:22:33:44:55,qinq"),
        ("br,100,rtl8139,qinq", "br", "100", "", "rtl8139", True, "br,100,rtl8139,qinq"),
        ("br,100,00:11:22:33:44:55,e1000", "br", "100", "00:11:22:33:44:55", "e1000", False,
         "br,100,00:11:22:33:44:55"),
        ("mega_bridge,7,00:11:22:33:44:55,virtio-net-pci,qinq", "mega_bridge", "7",
         "00:11:22:33:44:55", "virtio-net-pci", True, "7,00:11:22:33:44:55,virtio-net-pci,qinq"),
    ],
)  # fmt: skip
def test_netspec_forms_and_canonical_print(
    spec: str, bridge: str, vlan: str, mac: str, driver: str, qinq: bool, canonical: str
) -> None:
    nic = parse_netspec(spec, NICS)
    assert (nic.bridge, nic.alias, nic.mac, nic.driver, nic.qinq) == (
        bridge,
        vlan,
        mac,
        driver,
        qinq,
    )
    assert nic.raw == spec
    assert nic.spec() == canonical
    # the canonical form reads back to the same interface
    again = parse_netspec(canonical, NICS)
    assert again.spec() == canonical


def test_netspec_two_fields_without_known_driver_is_bridge_and_vlan() -> None:
    # with no qemu installed the driver set is empty and drivers read as bridges
    nic = parse_netspec("100,rtl8139", frozenset())
    assert (nic.bridge, nic.alias) == ("100", "rtl8139")


@pytest.mark.parametrize(
    "spec",
    ["a,b,c", "a,b,c,d", "a,b,c,d,e", "br,1,00:11:22:33:44:55,e1000,nope", "1,2,3,4,5,6"],
)
def test_malformed_netspecs(spec: str) -> None:
    with pytest.raises(CommandError, match=r"^malformed netspec$"):
        parse_netspec(spec, NICS)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("00:11:22:33:44:55", True),
        ("00-11-22-33-44-55", True),
        ("0011.2233.4455", True),
        ("00:11:22:33:44:55:66:77", True),
        ("00:11:22:33:44:5", False),
        ("00:11-22:33:44:55", False),
        ("00:11:22:33:44:5g", False),
        ("00:11:22:33:44:55:66", False),
        ("e1000", False),
    ],
)
def test_mac_check_follows_go_parsemac(text: str, ok: bool) -> None:
    assert is_mac(text) is ok


async def test_resolve_netspecs_uses_the_lookup_in_order() -> None:
    seen: list[str] = []

    async def lookup(text: str) -> int:
        seen.append(text)
        return 100 + len(seen)

    nets = await resolve_netspecs(["A", "br,B", "foo//C,qinq"], NICS, lookup)
    assert seen == ["A", "B", "foo//C"]
    assert [(n.alias, n.vlan) for n in nets] == [("A", 101), ("B", 102), ("foo//C", 103)]


async def test_resolve_netspecs_rejects_empty_vlan() -> None:
    async def lookup(text: str) -> int:
        raise AssertionError("not reached")

    with pytest.raises(CommandError, match=r"^VLAN must be non-empty string$"):
        await resolve_netspecs(["br,"], NICS, lookup)


# -- bondspecs -----------------------------------------------------------------------


def test_bondspec_with_three_interfaces_and_every_option() -> None:
    bond = parse_bondspec("0,1,2,balance-tcp,active,no-lacp-fallback,qinq,uplink")
    assert bond.interfaces == [0, 1, 2]
    assert (bond.mode, bond.lacp, bond.fallback, bond.qinq, bond.name) == (
        "balance-tcp",
        "active",
        False,
        True,
        "uplink",
    )
    assert bond.spec() == "0,1,2,balance-tcp,active,no-lacp-fallback,qinq,uplink"


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [
        ("1,2,active-backup", "1,2,active-backup"),
        ("1,2,active-backup,passive", "1,2,active-backup,passive"),
        ("1,2,active-backup,active", "1,2,active-backup"),
        ("1,2,3,balance-slb,qinq", "1,2,3,balance-slb,qinq"),
        ("1,2,3,balance-slb,bondy", "1,2,3,balance-slb,bondy"),
        ("1,2,3,4,balance-slb,qinq,bondy", "1,2,3,4,balance-slb,qinq,bondy"),
        ("0,1,balance-tcp,off,no-lacp-fallback", "0,1,balance-tcp,off,no-lacp-fallback"),
        ("0,1,balance-tcp,passive,qinq", "0,1,balance-tcp,passive,qinq"),
        ("0,1,balance-tcp,passive,name", "0,1,balance-tcp,passive,name"),
        ("0,1,balance-tcp,mega_bond3", "0,1,balance-tcp"),
    ],
)
def test_bondspec_forms(spec: str, canonical: str) -> None:
    assert parse_bondspec(spec).spec() == canonical


@pytest.mark.parametrize(
    "spec",
    [
        "1,active-backup",
        "1,2",
        "1,2,3",
        "1,2,active-backup,bogus,qinq",
        "0,1,balance-tcp,a,b,c,d,e",
    ],
)
def test_malformed_bondspecs(spec: str) -> None:
    with pytest.raises(CommandError, match=r"^malformed bondspec$"):
        parse_bondspec(spec)


def test_bondspec_bad_interface_index() -> None:
    with pytest.raises(CommandError, match=r"^invalid interface index x provided in bondspec$"):
        parse_bondspec("0,x,active-backup")


# -- diskspecs -----------------------------------------------------------------------


def test_check_path_puts_relative_paths_in_the_file_root(tmp_path: Path) -> None:
    assert check_path("a", FILES) == "/tmp/minimega/files/a"
    assert check_path("sub/../b.qcow2", FILES) == "/tmp/minimega/files/b.qcow2"
    assert check_path(str(tmp_path), FILES) == str(tmp_path)


@pytest.mark.parametrize(
    ("spec", "path", "interface", "cache", "canonical"),
    [
        ("a.qcow2", "/tmp/minimega/files/a.qcow2", "", "", "/tmp/minimega/files/a.qcow2"),
        ("/x/a.qcow2,virtio", "/x/a.qcow2", "virtio", "", "/x/a.qcow2,virtio"),
        ("/x/a.qcow2,none", "/x/a.qcow2", "", "none", "/x/a.qcow2,none"),
        ("/x/a,ahci,writethrough", "/x/a", "ahci", "writethrough", "/x/a,ahci,writethrough"),
    ],
)
def test_diskspec_forms(spec: str, path: str, interface: str, cache: str, canonical: str) -> None:
    disk = parse_diskspec(spec, FILES)
    assert (disk.path, disk.interface, disk.cache) == (path, interface, cache)
    assert disk.spec() == canonical


@pytest.mark.parametrize("spec", ["a,bogus", "a,none,ide", "a,ide,bogus", "a,ide,none,x"])
def test_malformed_diskspecs(spec: str) -> None:
    with pytest.raises(CommandError, match=r"^malformed diskspec$"):
        parse_diskspec(spec, FILES)


def test_same_disk_twice_is_a_conflict() -> None:
    with pytest.raises(CommandError, match=r"^disk conflict: /tmp/minimega/files/a$"):
        parse_diskspecs(["a", "/tmp/minimega/files/a,virtio"], FILES)


# -- the config ----------------------------------------------------------------------


def test_defaults_are_2_8s() -> None:
    c = VMConfig()
    assert (c.vcpus, c.memory, c.snapshot, c.coschedule, c.backchannel) == (1, 2048, True, -1, True)
    assert (c.qemu, c.cpu, c.vga, c.usb_use_xhci, c.init) == ("kvm", "host", "std", True, ["/init"])
    assert (c.networks, c.bonds, c.disks, c.tags, c.volume) == ([], [], [], {}, {})


def test_config_round_trips_through_json() -> None:
    c = VMConfig(memory=1024, tags={"a": "b"}, volume={"/g": "/h"})
    c.networks.append(NetConfig(alias="A", vlan=102, raw="A"))
    c.bonds.append(parse_bondspec("0,1,balance-slb"))
    c.disks.append(parse_diskspec("/d.qcow2,virtio", FILES))
    c.qemu_override.append(QemuOverride(match="a", repl="b"))
    assert msgspec.json.decode(msgspec.json.encode(c), type=VMConfig) == c


def test_copy_is_deep() -> None:
    c = VMConfig()
    c.networks.append(NetConfig(alias="A", vlan=102))
    c.bonds.append(parse_bondspec("0,1,balance-slb"))
    d = c.copy()
    d.networks[0].alias = "B"
    d.bonds[0].interfaces.append(5)
    d.init.append("x")
    d.tags["k"] = "v"
    assert c.networks[0].alias == "A"
    assert c.bonds[0].interfaces == [0, 1]
    assert c.init == ["/init"]
    assert c.tags == {}


def test_clear_one_field_and_all() -> None:
    c = VMConfig(memory=1, vcpus=4, qemu_append=["-k", "en-us"], usb_use_xhci=False)
    c.clear("qemu-append")
    assert c.qemu_append == []
    assert c.memory == 1
    c.clear("usb-use-xhci")
    assert c.usb_use_xhci is True
    c.clear(None)
    assert c == VMConfig()
    assert len(CLEAR_FIELDS) == 36
    with pytest.raises(ValueError, match="unknown vm config field"):
        c.clear("bogus")


def test_every_clear_field_is_an_attribute() -> None:
    fields = set(VMConfig.__struct_fields__)
    assert set(CLEAR_FIELDS.values()) <= fields


DEFAULT_DUMP_HEAD = (
    "VM configuration:\n"
    "Memory:           2048\n"
    "VCPUs:            1\n"
    "Networks:         []\n"
    "Bonds:            []\n"
    "Snapshot:         true\n"
    "UUID:             \n"
)


def test_dump_blocks() -> None:
    text = VMConfig().dump()
    assert text.startswith(DEFAULT_DUMP_HEAD)
    assert "\n\nKVM configuration:\nMigrate Path:        \n" in text
    assert "QEMU Path:           kvm\n" in text
    assert "\n\nContainer configuration:\nFilesystem Path: \n" in text
    assert text.endswith("FIFOs:           0\nVolumes:         \n\n")


def test_dump_shows_set_values_tags_and_volumes() -> None:
    c = VMConfig(memory=1024, tags={"b": "<2>", "a": "1"}, volume={"/scratch": "/tmp/v"})
    c.networks.append(NetConfig(alias="10", mac="b4:b6:76:69:68:68"))
    c.bonds.append(parse_bondspec("0,1,balance-slb"))
    text = c.dump()
    assert "Memory:           1024\n" in text
    assert "Networks:         [10,b4:b6:76:69:68:68]\n" in text
    assert "Bonds:            [0,1,balance-slb]\n" in text
    assert 'Tags:             {"a":"1","b":"\\u003c2\\u003e"}\n' in text
    assert "Volumes:         \n                 /scratch -> /tmp/v\n" in text


def test_write_config_lists_only_changes() -> None:
    assert VMConfig().write_config() == ["vm config init /init"]
    c = VMConfig(
        uuid="u",
        memory=1024,
        snapshot=False,
        coschedule=0,
        qemu_append=["-k", "en us"],
        usb_use_xhci=False,
        tags={"z": "1", "a": "2"},
        volume={"/d": "/h"},
        migrate="/m",
    )
    c.networks = [NetConfig(alias="A", vlan=102), NetConfig(alias="B", bridge="br", vlan=103)]
    c.disks = [parse_diskspec("/d.qcow2,virtio", FILES)]
    c.bonds = [parse_bondspec("0,1,balance-slb,qinq")]
    c.qemu_override = [QemuOverride(match="-m 1024", repl="-m 2048")]
    assert c.write_config() == [
        "vm config uuid u",
        "vm config memory 1024",
        "vm config snapshot false",
        "vm config coschedule 0",
        "vm config networks A br,B",
        "vm config bonds 0,1,balance-slb,qinq",
        "vm config tags a 2",
        "vm config tags z 1",
        "vm config migrate /m",
        "vm config disk /d.qcow2,virtio",
        "vm config usb-use-xhci false",
        'vm config qemu-append -k "en us"',
        'vm config qemu-override "-m 1024" "-m 2048"',
        "vm config init /init",
        "vm config volume /d /h",
    ]


def test_qemu_overrides_apply_in_order_and_list() -> None:
    c = VMConfig()
    c.qemu_override = [
        QemuOverride(match="-m 2048", repl="-m 4096"),
        QemuOverride(match="4096", repl="8"),
    ]
    args = ["-enable-kvm", "-m", "2048", "-name", "my vm"]
    assert c.apply_qemu_overrides(args) == ["-enable-kvm", "-m", "8", "-name", "my vm"]
    assert c.qemu_override_string(args) == (
        'id\tmatch\treplacement\n0\t"-m 2048"\t"-m 4096"\n1\t"4096"\t"8"\n'
        '\nBefore overrides:\n-enable-kvm -m 2048 -name "my vm"\n'
        "\nAfter overrides:\n-enable-kvm -m 8 -name my vm\n"
    )
