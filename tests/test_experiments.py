"""Experiments as files: ``megabus plan|up|down FILE`` (two LANs, a router and their guests)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from containers import alive
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ovsfix import ovs, unique
from procs import run
from routerworld import router_images
from solonode import Solo, solo_node

from megabus.client import Client, CommandFailedError
from megabus.client.experiments import ExperimentError, load, plan, up

__all__ = ["ovs"]  # the fixture, used by name

MEGABUS = str(Path(sys.executable).parent / "megabus")


def lab(bridge: str, routerfs: Path, guests_b: int = 3) -> str:
    return f"""\
# two LANs, a router between them, guests that take their addresses from it
name = "lab"
bridge = "{bridge}"

[vlans]
lan1 = "auto"
lan2 = "auto"

[defaults]
filesystem = "{routerfs}"

[[vm]]
name = "r0"
config = {{ preinit = "{routerfs}/preinit" }}
[vm.router]
interfaces = {{ lan1 = "10.93.1.1/24", lan2 = "10.93.2.1/24" }}
dhcp.lan1 = {{ range = ["10.93.1.100", "10.93.1.150"], router = "10.93.1.1" }}
dhcp.lan2 = {{ range = ["10.93.2.100", "10.93.2.150"], router = "10.93.2.1" }}

[[vm]]
name = "a"
count = 3
net = ["lan1"]
after = ["r0"]
cc = ["exec dhclient -1 veth0"]

[[vm]]
name = "b"
count = {guests_b}
net = ["lan2"]
after = ["r0"]
cc = ["exec dhclient -1 veth0"]
"""


# -- bad files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('name = "x"\n\n[[vm]]\nname = "a"\nnett = ["lan"]\n', 5, "unknown field `nett`"),
        (
            '[[vm]]\nname = "a"\nnet = [\n  "lan1",\n  "lan2",\n]\n\n[vlans]\nlan1 = 5\nlan2 = 6\n',
            4,
            "VLAN 'lan1' is used before it is declared (line 9)",
        ),
        ('[vlans]\nlan1 = 5\n[[vm]]\nname = "a"\nnet = ["lan9"]\n', 5, "'lan9' is not declared"),
        (
            '[[vm]]\nname = "a"\nafter = ["b"]\n\n[[vm]]\nname = "b"\nafter = ["c"]\n\n'
            '[[vm]]\nname = "c"\nafter = ["a"]\n',
            11,  # where the cycle closes
            "cycle in after: a -> b -> c -> a",
        ),
        ('[[vm]]\nname = "a"\ncount = "three"\n', 3, "Expected `int`, got `str`"),
        ('[[vm]]\nname = "a"\n[[vm]]\nname = "a"\n', 4, "VM a is already declared at line 2"),
        ("[vlans]\nlan1 = 5000\n", 2, "invalid VLAN 5000"),
        ('name = "x"\n[[vm]\n', 2, "Expected ']]' at the end of an array declaration"),
    ],
)
def test_a_bad_file_is_refused_with_its_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ExperimentError) as refused:
        load(path)
    assert refused.value.line == line, refused.value
    assert message in str(refused.value)
    assert str(refused.value).startswith(f"{path}:{line}: ")


async def test_plan_prints_the_commands_and_a_bad_file_its_line(tmp_path: Path) -> None:
    path = tmp_path / "lab.toml"
    path.write_text(lab("labbr", Path("/images/minirouterfs")))
    code, out = await run(MEGABUS, "plan", str(path))
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "namespace lab"
    assert lines == ["namespace lab", *(s.line for s in plan(load(path)))]
    assert "vm config net labbr,lan1 labbr,lan2" in lines
    assert "router r0 dhcp 10.93.2.1 range 10.93.2.100 10.93.2.150" in lines
    assert lines.index("vm start r0") < lines.index("vm start a0,a1,a2")
    assert lines[-3:] == ["cc exec dhclient -1 veth0", "clear cc filter", "clear cc prefix"]
    path.write_text(lab("labbr", Path("/x")).replace('net = ["lan2"]', 'net = ["lan3"]'))
    code, out = await run(MEGABUS, "plan", str(path))
    assert (code, out) == (1, f"megabus: {path}:30: VLAN 'lan3' is not declared in [vlans]\n")


# -- a real experiment ----------------------------------------------------------------------


@pytest.fixture
async def solo(tmp_path: Path) -> AsyncIterator[Solo]:
    async with solo_node(tmp_path / "base") as s:
        try:
            yield s
        finally:
            await s.node.executor.run_line("clear all", "", _drop)  # type: ignore[union-attr]


async def _drop(_batch: object) -> None:
    return None


async def address(mm: Client, vm: str, prefix: str, limit: float = 120.0) -> str:
    """The guest's IPv4 address in ``prefix``, asked through cc until it has one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        await mm.cc_filter(f"name={vm}")
        (cmd_id,) = (await mm.cc_exec(["ip", "-4", "-o", "addr", "show", "dev", "veth0"])).data
        await mm.clear_cc_filter()
        while loop.time() < deadline:
            try:
                files = (await mm.cc_responses(cmd_id)).cc_responses()
            except CommandFailedError:  # no responses yet
                files = []
            if files:
                break
            await asyncio.sleep(0.5)
        out = "".join(f.text for f in files if f.file == "stdout")
        for word in out.split():
            if word.startswith(prefix):
                return word
        assert loop.time() < deadline, f"{vm}: no address in {prefix}*: {out!r}"
        await asyncio.sleep(1.0)


@pytest.mark.usefixtures("ovs")
@pytest.mark.timeout(600)
async def test_two_lans_a_router_and_six_guests_up_edited_and_down(
    solo: Solo, tmp_path: Path
) -> None:
    routerfs = router_images() / "minirouterfs"
    bridge = unique("xlab")
    path = tmp_path / "lab.toml"
    path.write_text(lab(bridge, routerfs))
    base = ["-base", str(solo.base)]

    code, out = await run(MEGABUS, *base, "up", str(path), timeout=300)
    assert code == 0, out
    assert "] vm launch container a0,a1,a2" in out
    assert out.splitlines()[-1] == "lab is up on solo: 7 launched, 0 killed, 0 unchanged"

    async with await Client.connect(base=str(solo.base), namespace="lab", timeout=30) as mm:
        vms = {r.name: r for r in (await mm.vm_info()).rows}
        assert sorted(vms) == ["a0", "a1", "a2", "b0", "b1", "b2", "r0"]
        assert {r.state for r in vms.values()} == {"RUNNING"}
        # checked with cc exec: every guest has a lease from the router on its LAN
        for name in ("a0", "a1", "a2"):
            assert (await address(mm, name, "10.93.1.")).endswith("/24")
        for name in ("b0", "b1", "b2"):
            assert (await address(mm, name, "10.93.2.")).endswith("/24")
        assert {r.alias for r in (await mm.vlans()).rows} == {"lan1", "lan2"}

        # one more guest on lan2: only it is launched, the rest keep running untouched
        path.write_text(lab(bridge, routerfs, guests_b=4))
        async with mm.events("vm") as events:
            code, out = await run(MEGABUS, *base, "up", str(path), timeout=300)
            assert code == 0, out
            assert out.splitlines()[-1] == "lab is up on solo: 1 launched, 0 killed, 7 unchanged"
            first = await events.next(timeout=30)
        assert (first.name, first.detail["action"]) == ("b3", "launch")
        again = {r.name: r for r in (await mm.vm_info()).rows}
        assert sorted(again) == ["a0", "a1", "a2", "b0", "b1", "b2", "b3", "r0"]
        assert all(again[n].uuid == vms[n].uuid for n in vms)
        assert (await address(mm, "b3", "10.93.2.")).endswith("/24")
        # up with nothing changed does nothing
        report = await up(mm, load(path))
        assert (report.launched, report.killed, report.steps) == ([], [], 0)
        pids = [int(r.pid) for r in again.values()]

        code, out = await run(MEGABUS, *base, "down", str(path))
        assert code == 0, out
        assert out.splitlines()[-1] == "lab is down on solo"
        # nothing left: no namespace, no VMs, no processes, no VLANs, no bridge
        root = await Client.connect(base=str(solo.base))
        try:
            assert "lab" not in {r.get("namespace") for r in (await root.run("namespace")).rows}
            assert bridge not in {r.get("bridge") for r in (await root.bridge()).rows}
            assert (await mm.vm_info()).rows == []
            assert (await mm.vlans()).rows == []
        finally:
            await root.close()
        assert not [pid for pid in pids if alive(pid)]
        # down again: already down, no error
        code, out = await run(MEGABUS, *base, "down", str(path))
        assert code == 0, out


def test_the_readme_experiment_file_is_a_valid_experiment(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    text = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "lab.toml"
    path.write_text(text)
    lines = [step.line for step in plan(load(path))]
    assert "router r0 route static 0.0.0.0/0 10.0.2.254" in lines
    assert lines[-1] == "clear cc prefix"


async def test_a_command_the_node_refuses_is_reported_at_its_line(
    solo: Solo, tmp_path: Path
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        'name = "oops"\n\n[[vm]]\nname = "k"\ntype = "kvm"\nconfig = { vcpus = "many" }\n'
    )
    code, out = await run(MEGABUS, "-base", str(solo.base), "up", str(path))
    assert code == 1, out
    assert f"megabus: {path}:6: vm config vcpus many: solo: " in out
    # nothing was launched, and the node goes on
    async with await Client.connect(base=str(solo.base), namespace="oops") as mm:
        assert (await mm.vm_info()).rows == []


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet=st.sampled_from(list('[]{}=",.#\'\n abvm0123lan_-"""')), max_size=200))
def test_any_text_is_an_experiment_or_a_clear_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(text)
    error = ""
    try:
        load(path)
    except ExperimentError as err:  # the one error a file may give
        error = str(err)
    assert error == "" or error.startswith(f"{path}:")


async def test_up_relaunches_what_changed_and_kills_what_went(solo: Solo, tmp_path: Path) -> None:
    path = tmp_path / "kvm.toml"

    def write(memory: int, extra: bool) -> None:
        text = 'hosts = ["solo"]\n\n'
        text += f'[[vm]]\nname = "k"\ntype = "kvm"\ncount = 2\nconfig = {{ memory = {memory} }}\n'
        if extra:
            text += '\n[[vm]]\nname = "j"\ntype = "kvm"\nconfig = { memory = 128 }\n'
        path.write_text(text)

    async with await Client.connect(base=str(solo.base), namespace="kvm") as mm:
        write(128, extra=False)
        first = await up(mm, load(path))
        assert (first.launched, first.killed, first.kept) == (["k0", "k1"], [], [])
        assert (await mm.ns_hosts()).text == "solo"
        before = {r.name: r.uuid for r in (await mm.vm_info()).rows}

        write(256, extra=True)  # k changed, j is new
        second = await up(mm, load(path))
        assert (second.launched, second.killed, second.kept) == (
            ["k0", "k1", "j"],
            ["k0", "k1"],
            [],
        )
        rows = {r.name: r for r in (await mm.vm_info()).rows}
        assert sorted(rows) == ["j", "k0", "k1"]
        assert {r.memory for r in rows.values()} == {"256", "128"}
        assert rows["k0"].uuid != before["k0"]
        assert {r.state for r in rows.values()} == {"RUNNING"}

        write(256, extra=False)  # j went away
        third = await up(mm, load(path))
        assert (third.launched, third.killed, third.kept) == ([], ["j"], ["k0", "k1"])
        assert sorted(r.name for r in (await mm.vm_info()).rows) == ["k0", "k1"]

        # a host the cluster does not have: refused at the file's line, nothing changed
        path.write_text(path.read_text().replace('["solo"]', '["solo", "nohost"]'))
        with pytest.raises(ExperimentError, match=r":1: ns add-hosts solo,nohost: solo: unknown"):
            await up(mm, load(path))
        assert (await mm.ns_hosts()).text == "solo"


ROUTER = """\
name = "rt"

[vlans]
inside = 2701
outside = "auto"

[[vm]]
name = "gw"
type = "kvm"
config = { memory = 128 }
[vm.router]
interfaces = { inside = "10.94.1.1/24", outside = "10.94.2.1/24" }
routes = [{ network = "10.95.0.0/16", next_hop = "10.94.2.254" }]
dns = { "10.94.1.53" = "ns.lab" }
fw = ["default drop", "accept in 0 10.94.1.0/24 22 tcp"]
[vm.router.dhcp.inside]
range = ["10.94.1.10", "10.94.1.20"]
router = "10.94.1.1"
dns = "10.94.1.1"
static = { "00:11:22:33:44:55" = "10.94.1.5" }
"""


async def test_a_router_s_whole_config_is_accepted_by_the_node(solo: Solo, tmp_path: Path) -> None:
    path = tmp_path / "rt.toml"
    path.write_text(ROUTER)
    async with await Client.connect(base=str(solo.base), namespace="rt") as mm:
        report = await up(mm, load(path))
        assert report.launched == ["gw"]
        summary = (await mm.router("gw")).text
    for part in (
        "10.94.1.1/24",
        "10.94.2.1/24",
        "10.94.1.10",
        "00:11:22:33:44:55",
        "10.95.0.0/16",
        "ns.lab",
        "10.94.1.0/24",
    ):
        assert part in summary, (part, summary)


async def test_up_leaves_a_vm_it_did_not_launch_alone(solo: Solo, tmp_path: Path) -> None:
    path = tmp_path / "own.toml"
    path.write_text('[[vm]]\nname = "mine"\ntype = "kvm"\nconfig = { memory = 128 }\n')
    async with await Client.connect(base=str(solo.base), namespace="own") as mm:
        await mm.vm_config_memory(128)
        await mm.vm_launch_kvm("theirs")
        report = await up(mm, load(path))
        assert (report.launched, report.killed) == (["mine"], [])
        await mm.vm_kill("mine")  # dead: up launches it again, after a flush
        again = await up(mm, load(path))
        assert (again.launched, again.killed) == (["mine"], ["mine"])
        states = {r.name: r.state for r in (await mm.vm_info()).rows}
        assert states == {"mine": "RUNNING", "theirs": "BUILDING"}
