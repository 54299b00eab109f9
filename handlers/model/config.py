"""The ``vm config`` model: every field of minimega 2.8's VMConfig with its defaults.

A :class:`VMConfig` is what ``vm launch`` copies into each new VM, so it is a
``msgspec.Struct`` of JSON-friendly types and travels on the bus as is. The
three text forms 2.8 has are here: the ``vm config`` dump (:meth:`VMConfig.dump`),
the ``<instance>/config`` lines (:meth:`VMConfig.write_config`) and the
``qemu-override`` listing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import msgspec

from megabus.bus.errors import CommandError
from megabus.handlers.language.gojson import go_json
from megabus.handlers.language.lexer import go_quote
from megabus.handlers.model.bondspec import BondConfig, bonds_string
from megabus.handlers.model.diskspec import DiskConfig, disks_string
from megabus.handlers.model.netspec import NetConfig, networks_string

#: minimega's wildcard word (``clear vm config tag all``).
WILDCARD = "all"
#: Longest qemu line the overrides may make: Linux takes 2 MiB of arguments in
#: all, so a longer line could never start anyway.
MAX_QEMU_LINE = 2 * 1024 * 1024

#: Every field ``clear vm config <field>`` accepts, in 2.8's pattern order,
#: mapped to the attribute it resets.
CLEAR_FIELDS: dict[str, str] = {
    name: name.replace("-", "_")
    for name in (
        "append", "backchannel", "bonds", "cpu", "cdrom", "colocate", "cores",
        "coschedule", "disks", "fifos", "filesystem", "hostname", "init", "initrd",
        "kernel", "machine", "memory", "migrate", "networks", "preinit",
        "qemu-append", "qemu-override", "qemu", "schedule", "serial-ports",
        "snapshot", "sockets", "tags", "threads", "tpm-socket", "uuid",
        "usb-use-xhci", "vcpus", "vga", "virtio-ports", "volume",
    )
}  # fmt: skip


class QemuOverride(msgspec.Struct, kw_only=True):
    """A ``vm config qemu-override`` entry: replace ``match`` in the qemu line."""

    match: str
    repl: str


class VMConfig(msgspec.Struct, kw_only=True):
    """One namespace's ``vm config`` (base, KVM and container parts)."""

    # -- base (all VM types)
    uuid: str = ""
    vcpus: int = 1
    memory: int = 2048
    snapshot: bool = True
    schedule: str = ""
    colocate: str = ""
    coschedule: int = -1
    backchannel: bool = True
    networks: list[NetConfig] = msgspec.field(default_factory=list)
    bonds: list[BondConfig] = msgspec.field(default_factory=list)
    tags: dict[str, str] = msgspec.field(default_factory=dict)

    # -- KVM
    #: Looked up on PATH when it has no slash (Debian's qemu-system-x86 has ``kvm``).
    qemu: str = "kvm"
    kernel: str = ""
    initrd: str = ""
    cdrom: str = ""
    migrate: str = ""
    cpu: str = "host"
    sockets: int = 0
    cores: int = 0
    threads: int = 0
    machine: str = ""
    serial_ports: int = 0
    virtio_ports: str = ""
    vga: str = "std"
    append: list[str] = msgspec.field(default_factory=list)
    disks: list[DiskConfig] = msgspec.field(default_factory=list)
    usb_use_xhci: bool = True
    tpm_socket: str = ""
    qemu_append: list[str] = msgspec.field(default_factory=list)
    qemu_override: list[QemuOverride] = msgspec.field(default_factory=list)

    # -- containers
    filesystem: str = ""
    hostname: str = ""
    init: list[str] = msgspec.field(default_factory=lambda: ["/init"])
    preinit: str = ""
    fifos: int = 0
    volume: dict[str, str] = msgspec.field(default_factory=dict)

    def copy(self) -> VMConfig:
        """A deep copy (``vm config save``, ``vm launch``)."""
        return msgspec.convert(msgspec.to_builtins(self), VMConfig)

    def clear(self, field: str | None = None) -> None:
        """Reset one field (its CLI name, e.g. ``qemu-append``) or, with None, all."""
        fresh = VMConfig()
        if field is None or field == WILDCARD:
            for attr in self.__struct_fields__:
                setattr(self, attr, getattr(fresh, attr))
            return
        name = CLEAR_FIELDS.get(field)
        if name is None:
            raise ValueError(f"unknown vm config field: {field}")
        setattr(self, name, getattr(fresh, name))

    # -- text forms

    def networks_string(self) -> str:
        """``[spec spec]``, what ``vm config networks`` prints."""
        return f"[{networks_string(self.networks)}]"

    def bonds_string(self) -> str:
        """``[spec spec]``, what ``vm config bonds`` prints."""
        return f"[{bonds_string(self.bonds)}]"

    def disks_string(self) -> str:
        """``[spec spec]``, what ``vm config disks`` prints."""
        return f"[{disks_string(self.disks)}]"

    def dump(self) -> str:
        """The ``vm config`` output: three tabwriter blocks, as 2.8 prints them."""
        # imported here so the model stays importable without the language package
        from megabus.handlers.language.tabwriter import tabwrite

        def block(title: str, rows: Iterable[tuple[str, str]]) -> str:
            body = "".join(f"{k}\t{v}\n" for k, v in rows)
            return f"{title}\n{tabwrite(body, minwidth=5, tabwidth=0, padding=1)}\n"

        base = block(
            "VM configuration:",
            [
                ("Memory:", str(self.memory)),
                ("VCPUs:", str(self.vcpus)),
                ("Networks:", self.networks_string()),
                ("Bonds:", self.bonds_string()),
                ("Snapshot:", go_bool(self.snapshot)),
                ("UUID:", self.uuid),
                ("Schedule host:", self.schedule),
                ("Coschedule limit:", str(self.coschedule)),
                ("Colocate:", self.colocate),
                ("Backchannel:", go_bool(self.backchannel)),
                ("Tags:", go_json_map(self.tags)),
            ],
        )
        kvm = block(
            "KVM configuration:",
            [
                ("Migrate Path:", self.migrate),
                ("Disks:", self.disks_string()),
                ("CDROM Path:", self.cdrom),
                ("Kernel Path:", self.kernel),
                ("Initrd Path:", self.initrd),
                ("Kernel Append:", go_list(self.append)),
                ("QEMU Path:", self.qemu),
                ("QEMU Append:", go_list(self.qemu_append)),
                ("Serial Ports:", str(self.serial_ports)),
                ("Virtio-Serial Ports:", self.virtio_ports),
                ("Machine:", self.machine),
                ("CPU:", self.cpu),
                ("Cores:", str(self.cores)),
                ("Threads:", str(self.threads)),
                ("Sockets:", str(self.sockets)),
                ("VGA:", self.vga),
                ("Usb Use XHCI:", go_bool(self.usb_use_xhci)),
                ("TPM Socket:", self.tpm_socket),
            ],
        )
        # 2.8 lists volumes as extra rows of the same block, under an empty key
        volumes = [("", f"{k} -> {v}") for k, v in sorted(self.volume.items())]
        container = block(
            "Container configuration:",
            [
                ("Filesystem Path:", self.filesystem),
                ("Hostname:", self.hostname),
                ("Init:", go_list(self.init)),
                ("Pre-init:", self.preinit),
                ("FIFOs:", str(self.fifos)),
                ("Volumes:", ""),
                *volumes,
            ],
        )
        return base + kvm + container

    def write_config(self) -> list[str]:
        """The ``vm config ...`` lines 2.8's ``WriteConfig`` writes for this config.

        Scalars are written when they differ from the default; lists when they
        are not empty (so the default ``init`` is always written, as in 2.8).
        Map entries come out sorted.
        """
        d = VMConfig()
        out: list[str] = []

        def scalar(name: str, attr: str) -> None:
            value = getattr(self, attr)
            if value != getattr(d, attr):
                text = go_bool(value) if isinstance(value, bool) else str(value)
                out.append(f"vm config {name} {text}")

        for name in ("uuid", "vcpus", "memory", "snapshot", "schedule", "colocate"):
            scalar(name, name)
        scalar("coschedule", "coschedule")
        scalar("backchannel", "backchannel")
        if self.networks:
            out.append(f"vm config networks {networks_string(self.networks)}")
        if self.bonds:
            out.append(f"vm config bonds {bonds_string(self.bonds)}")
        out += [f"vm config tags {k} {v}" for k, v in sorted(self.tags.items())]

        for name in ("qemu", "kernel", "initrd", "cdrom", "migrate", "cpu"):
            scalar(name, name)
        for name in ("sockets", "cores", "threads", "machine"):
            scalar(name, name)
        scalar("serial-ports", "serial_ports")
        scalar("virtio-ports", "virtio_ports")
        scalar("vga", "vga")
        if self.append:
            out.append(f"vm config append {quote_join(self.append)}")
        if self.disks:
            out.append(f"vm config disk {disks_string(self.disks)}")
        scalar("usb-use-xhci", "usb_use_xhci")
        scalar("tpm-socket", "tpm_socket")
        if self.qemu_append:
            out.append(f"vm config qemu-append {quote_join(self.qemu_append)}")
        out += [
            f"vm config qemu-override {quote_join([o.match, o.repl])}" for o in self.qemu_override
        ]

        scalar("filesystem", "filesystem")
        scalar("hostname", "hostname")
        if self.init:
            out.append(f"vm config init {quote_join(self.init)}")
        scalar("preinit", "preinit")
        scalar("fifos", "fifos")
        out += [f"vm config volume {k} {v}" for k, v in sorted(self.volume.items())]
        return out

    # -- qemu overrides

    def apply_qemu_overrides(self, args: Sequence[str]) -> list[str]:
        """The qemu argument list after every override, applied in order.

        As in 2.8 the overrides work on the space-joined line (arguments with
        spaces quoted) and the result is split again honouring the quotes.
        """
        line = unescape_string(args)
        for o in self.qemu_override:
            # Each override may multiply the line (2.8 has no bound: twenty
            # overrides "a" -> "aa" make a megabyte, thirty a gigabyte), so the
            # length is worked out before the string is built.
            size = len(line) + line.count(o.match) * (len(o.repl) - len(o.match))
            if size > MAX_QEMU_LINE:
                raise CommandError(
                    f"qemu overrides make a qemu line of {size} characters, "
                    f"over the limit of {MAX_QEMU_LINE}"
                )
            line = line.replace(o.match, o.repl)
        return fields_quote_escape('"', line)

    def qemu_override_string(self, args: Sequence[str]) -> str:
        """What ``vm config qemu-override`` prints, for the qemu line ``args``.

        2.8 writes the table past its tabwriter, so the cells are joined by
        raw tabs; that is kept.
        """
        rows = "".join(f'{i}\t"{o.match}"\t"{o.repl}"\n' for i, o in enumerate(self.qemu_override))
        before = unescape_string(args)
        after = " ".join(self.apply_qemu_overrides(args))
        return (
            f"id\tmatch\treplacement\n{rows}"
            f"\nBefore overrides:\n{before}\n"
            f"\nAfter overrides:\n{after}\n"
        )


# -- Go formatting helpers ----------------------------------------------------


def go_bool(value: bool) -> str:
    """Go's ``%v``/``%t`` of a bool."""
    return "true" if value else "false"


def go_list(values: Sequence[str]) -> str:
    """Go's ``%v`` of a ``[]string``: ``[a b c]``, ``[]`` when empty."""
    return f"[{' '.join(values)}]"


def go_json_map(values: dict[str, str]) -> str:
    """Go's ``json.Marshal`` of a ``map[string]string`` (sorted keys, HTML-safe)."""
    if not values:
        return "{}"  # most VMs have no tags: skip the encoder
    return go_json(values)


def quote_join(values: Sequence[str], sep: str = " ") -> str:
    """minimega's ``quoteJoin``: Go-quote only the elements holding whitespace."""
    return sep.join(go_quote(v) if re.search(r"\s", v) else v for v in values)


def unescape_string(values: Sequence[str]) -> str:
    """minimega's ``unescapeString``: join, wrapping whitespace-holding items in quotes."""
    return " ".join(f'"{v}"' if re.search(r"\s", v) else v for v in values).strip()


def fields_quote_escape(quote: str, text: str) -> list[str]:
    """minimega's ``fieldsQuoteEscape``: split on whitespace, keeping quoted runs."""
    out: list[str] = []
    tracing = False
    current = ""
    for word in text.split():
        if tracing:
            if quote in word:
                tracing = False
                current += " " + word.replace(quote, "")
                out.append(current)
            else:
                current += " " + word
        elif quote in word:
            current = word.replace(quote, "")
            if word.endswith(quote):
                out.append(current)
            else:
                tracing = True
        else:
            out.append(word)
    return out
