"""``deploy`` against a real sshd in a network namespace, with a key the test makes.

The far "host" is a network namespace joined to this one by a veth pair; its
sshd accepts only the test's key, which reaches ssh through an ssh-agent (as
a node's operator would have it). The nats-server listens where the
namespace can reach it. ``deploy launch`` must start a real ``megabus node``
there that answers commands over the bus and logs to this node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from natsd import until

from megabus.bus.connection import Bus
from megabus.bus.errors import NoRespondersError
from megabus.bus.server import EmbeddedServer
from megabus.config.settings import Settings
from megabus.handlers.commands.deploy import entry_point
from megabus.handlers.main import Node

SSHD = "/usr/sbin/sshd"


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def far_host(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A network namespace with a veth to this one: yields (its name, its address, ours)."""
    tag = uuid.uuid4().hex[:6]
    ns = f"mbdeploy-{tag}"
    net = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
    here, there = f"{net}.1", f"{net}.2"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", f"mbd{tag}h", "type", "veth", "peer", "name", f"mbd{tag}n")
        sh("ip", "link", "set", f"mbd{tag}n", "netns", ns)
        sh("ip", "addr", "add", f"{here}/30", "dev", f"mbd{tag}h")
        sh("ip", "link", "set", f"mbd{tag}h", "up")
        sh("ip", "-n", ns, "addr", "add", f"{there}/30", "dev", f"mbd{tag}n")
        sh("ip", "-n", ns, "link", "set", f"mbd{tag}n", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns, there, here
    finally:
        subprocess.run(["ip", "link", "del", f"mbd{tag}h"], capture_output=True, check=False)
        sh("ip", "netns", "del", ns)


@contextlib.asynccontextmanager
async def sshd(tmp_path: Path, ns: str, address: str) -> AsyncIterator[Path]:
    """sshd in ``ns`` on ``address``:22 accepting one fresh key; yields the private key."""
    d = tmp_path / "ssh"
    d.mkdir()
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key"))
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "id"))
    (d / "authorized_keys").write_text((d / "id.pub").read_text())
    (d / "sshd_config").write_text(
        f"ListenAddress {address}\nPort 22\nHostKey {d / 'host_key'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # noqa: ASYNC240 - sshd privilege separation dir
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, SSHD, "-D", "-e", "-f", str(d / "sshd_config"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(10):
            while True:
                line = (await proc.stderr.readline()).decode()
                assert line, "sshd exited before listening"
                if "Server listening" in line:
                    break
        yield d / "id"
    finally:
        proc.terminate()
        await proc.wait()


@contextlib.asynccontextmanager
async def ssh_agent(key: Path, tmp_path: Path) -> AsyncIterator[None]:
    """An ssh-agent holding ``key``, exported to this process as a node would have it."""
    sock = tmp_path / "agent.sock"
    proc = await asyncio.create_subprocess_exec(
        "ssh-agent", "-D", "-a", str(sock),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await until(sock.exists)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        added = await asyncio.create_subprocess_exec(
            "ssh-add", "-q", str(key), env=env, stderr=asyncio.subprocess.DEVNULL
        )
        assert await added.wait() == 0
        old = os.environ.get("SSH_AUTH_SOCK")
        os.environ["SSH_AUTH_SOCK"] = str(sock)
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("SSH_AUTH_SOCK", None)
            else:
                os.environ["SSH_AUTH_SOCK"] = old
    finally:
        proc.terminate()
        await proc.wait()


async def run(bus: Bus, node: str, line: str) -> list[str]:
    replies = await bus.command(node, line, idle_timeout=90)
    errors = [r.error for rep in replies for r in rep.responses if r.error]
    assert errors == []
    return [r.response for rep in replies for r in rep.responses]


async def errors_of(bus: Bus, node: str, line: str) -> list[str]:
    replies = await bus.command(node, line, idle_timeout=90)
    return [r.error for rep in replies for r in rep.responses if r.error]


async def test_deploy_launch_starts_a_node_on_the_far_host_over_ssh(
    tmp_path: Path, far_host: tuple[str, str, str]
) -> None:
    ns, there, here = far_host
    server = EmbeddedServer(tmp_path / "nats", port=0, host=here)
    await server.start()
    url = server.client_url  # on the veth address: the namespace reaches it
    node = Node(Settings(name="n1", nats=[url], base=str(tmp_path / "base1"), level="info"))
    far_base = tmp_path / "far"
    try:
        await node.start()
        bus = await Bus.connect([url], name="client")
        try:
            async with sshd(tmp_path, ns, there) as key, ssh_agent(key, tmp_path):
                # the default flags: this node's servers, settings and itself as log node
                (flags,) = await run(bus, "n1", "deploy flags")
                assert flags == (
                    f"-nats={url} -prefix=mb -base={tmp_path / 'base1'} -vlanrange=101-4096 "
                    "-heartbeat=2 -level=info -accel=auto -log-node=n1"
                )
                await run(bus, "n1", f"deploy flags -nats={url} -name=far1 -base={far_base}"
                          " -heartbeat=0.5 -level=info -log-node=n1")  # fmt: skip
                await run(bus, "n1", f"deploy stdout {tmp_path / 'far.out'}")
                await run(bus, "n1", f"deploy stderr {tmp_path / 'far.err'}")
                assert await run(bus, "n1", "deploy stdout") == [str(tmp_path / "far.out")]
                logs: list[str] = []

                async def on_log(msg: object) -> None:
                    logs.append(msg.subject)  # type: ignore[attr-defined]

                await bus.nc.subscribe(bus.subjects.log("far1", "info"), cb=on_log)
                await run(bus, "n1", f"deploy launch {there} root")
                # the far node comes up on the bus and serves commands
                async with asyncio.timeout(60):
                    while True:
                        try:
                            out = await run(bus, "far1", "echo from far away")
                            break
                        except NoRespondersError:
                            await asyncio.sleep(0.2)
                assert out == ["from far away"]
                # it logs to the log node it was given
                await until(lambda: bool(logs), within=20)
                info = json.loads((far_base / "megabus.json").read_text())
                assert info["name"] == "far1"
                os.kill(info["pid"], signal.SIGTERM)
                await until(lambda: not (far_base / "megabus.json").exists(), within=30)
        finally:
            await bus.close()
    finally:
        await node.stop()
        await server.stop()


async def test_deploy_reports_ssh_failures_and_bad_hosts(
    tmp_path: Path, far_host: tuple[str, str, str]
) -> None:
    _, there, here = far_host
    server = EmbeddedServer(tmp_path / "nats", port=0, host=here)
    await server.start()
    node = Node(Settings(name="n1", nats=[server.client_url], base=str(tmp_path / "b")))
    try:
        await node.start()
        bus = await Bus.connect([server.client_url], name="client")
        try:
            # nothing listens on port 22 there: ssh fails, the node says which host
            (err,) = await errors_of(bus, "n1", f"deploy launch {there}")
            assert err.startswith(f"{there}: exit status 255: ")
            (err,) = await errors_of(bus, "n1", "deploy launch -oProxyCommand=x")
            assert err == "invalid hosts: '-oProxyCommand=x'"
            (err,) = await errors_of(bus, "n1", "deploy launch kn[1-")
            assert err == "unterminated '['"
            await run(bus, "n1", "deploy flags -level=debug")
            assert await run(bus, "n1", "deploy flags") == ["-level=debug"]
            await run(bus, "n1", "clear deploy flags")
            (flags,) = await run(bus, "n1", "deploy flags")
            assert flags.endswith("-log-node=n1")
            await run(bus, "n1", "deploy flags -level=debug")
            await run(bus, "n1", "clear all")
            (flags,) = await run(bus, "n1", "deploy flags")
            assert flags.endswith("-log-node=n1")
        finally:
            await bus.close()
    finally:
        await node.stop()
        await server.stop()


def test_the_remote_command_quotes_every_word() -> None:
    from megabus.handlers.commands.deploy import ssh_command

    argv = ssh_command("kn1", "bob", "nohup x > /dev/null &")
    assert argv == [
        "ssh",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "bob@kn1",
        "nohup x > /dev/null &",
    ]
    assert Path(entry_point()).name == "megabus"
