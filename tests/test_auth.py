"""Authentication and authorization on NATS (issue 15, part 1).

Roles are nats-server permissions (``bus/security.py``): an operator runs
commands, a watcher only follows events, status, logs, heartbeats and VLANs,
a node serves and uses JetStream. The README's first command, ``megabus node``
with its own nats-server, is secured by default and its local clients need
no flags. Each refusal is quick, says what is wrong, and leaves the node
untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors
import pytest
from megabuscmd import MEGABUS
from megabuscmd import megabus as run
from natsd import free_port
from secure import Recorder, Secured, raw_request, secured_server
from secure import recorder_node as shared_recorder_node

from megabus.bus.codec import encode
from megabus.bus.connection import Bus
from megabus.bus.errors import AuthorizationError, PermissionDeniedError, SecurityError
from megabus.bus.messages import CommandReply, CommandRequest, Event, LogRecord, StatusUpdate
from megabus.bus.rawclient import AuthorizationError as RawAuthorizationError
from megabus.bus.rawclient import NoRespondersError as RawNoRespondersError
from megabus.bus.rawclient import PermissionDeniedError as RawPermissionDeniedError
from megabus.bus.rawclient import RawClient
from megabus.bus.security import (
    NODE,
    OPERATOR,
    WATCHER,
    Credentials,
    TlsFiles,
    ensure_local_credentials,
    env_credentials,
    permissions,
    read_credentials,
)
from megabus.cli.args import UsageError, resolve_target
from megabus.config.settings import Settings
from megabus.handlers.main import Node, run_node


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    async with secured_server(tmp_path / "srv") as s:
        yield s


@pytest.fixture
async def recorder_node(tmp_path: Path, secured: Secured) -> AsyncIterator[tuple[Node, Recorder]]:
    async with shared_recorder_node(
        nats=[secured.url],
        base=str(tmp_path / "base"),
        credentials=str(secured.auth_dir / "node.json"),
    ) as made:
        yield made


async def connect(secured: Secured, role: str | None, name: str = "t") -> Bus:
    creds = secured.creds[role] if role else None
    return await Bus.connect([secured.url], name=name, credentials=creds)


# --- refusals at login --------------------------------------------------------------


async def test_a_client_without_credentials_is_refused_at_once(secured: Secured) -> None:
    started = time.monotonic()
    with pytest.raises(AuthorizationError, match="requires credentials and none were found"):
        await Bus.connect([secured.url], name="anon", timeout=5)
    assert time.monotonic() - started < 2  # not a timeout: the first refusal ends it
    with pytest.raises(RawAuthorizationError, match="requires credentials"):
        await asyncio.to_thread(RawClient.connect, [secured.url])


async def test_a_wrong_password_is_refused(secured: Secured) -> None:
    wrong = Credentials("operator", "not-the-password", source="test")
    with pytest.raises(AuthorizationError, match="user 'operator' \\(from test\\): wrong"):
        await Bus.connect([secured.url], name="x", credentials=wrong, timeout=5)
    with pytest.raises(RawAuthorizationError, match="wrong user or password"):
        await asyncio.to_thread(RawClient.connect, [secured.url], credentials=wrong)


# --- roles ------------------------------------------------------------------------------


async def test_an_operator_runs_commands(
    secured: Secured, recorder_node: tuple[Node, Recorder]
) -> None:
    op = await connect(secured, OPERATOR)
    try:
        replies = await op.command("n1", "hello")
        assert replies[0].rendered == "hello"
        data, headers = encode(CommandRequest(line="anyone"))
        reply = await op.nc.request(op.subjects.any_cmd(), data, headers=headers, timeout=5)
        assert b"anyone" in reply.data
    finally:
        await op.close()
    got = await asyncio.to_thread(
        raw_request, secured.url, secured.creds[OPERATOR], "mb.v1.node.n1.cmd", "raw"
    )
    assert got[-1]["rendered"] == "raw"
    assert recorder_node[1].lines == ["hello", "anyone", "raw"]


async def test_a_watcher_cannot_run_commands_and_the_node_is_untouched(
    secured: Secured, recorder_node: tuple[Node, Recorder]
) -> None:
    watcher = await connect(secured, WATCHER)
    try:
        started = time.monotonic()
        with pytest.raises(PermissionDeniedError, match="user 'watcher' may not"):
            await watcher.command("n1", "shell rm -rf /", idle_timeout=10)
        assert time.monotonic() - started < 5  # refused, not timed out
    finally:
        await watcher.close()
    with pytest.raises(RawPermissionDeniedError, match="user 'watcher' may not") as refused:
        await asyncio.to_thread(
            raw_request, secured.url, secured.creds[WATCHER], "mb.v1.node.n1.cmd", "x"
        )
    assert refused.value.subject
    assert recorder_node[1].lines == []
    # and the node still serves an operator
    op = await connect(secured, OPERATOR)
    try:
        assert (await op.command("n1", "still here"))[0].rendered == "still here"
    finally:
        await op.close()


async def test_a_refused_single_reply_request_fails_at_once(
    secured: Secured, recorder_node: tuple[Node, Recorder]
) -> None:
    # Bus.request (one reply, nats-py's request) as well as the command stream:
    # the refusal ends it, not its (here hour-long) timeout
    watcher = await connect(secured, WATCHER)
    try:
        async with asyncio.timeout(60):
            with pytest.raises(PermissionDeniedError, match="user 'watcher' may not publish"):
                await watcher.request(
                    watcher.subjects.node_cmd("n1"),
                    CommandRequest(line="shell true"),
                    CommandReply,
                    timeout=3600,
                )
        assert watcher.nc.is_connected
    finally:
        await watcher.close()
    assert recorder_node[1].lines == []


async def test_a_watcher_reads_events_status_logs_heartbeats_and_vlans(
    secured: Secured, recorder_node: tuple[Node, Recorder]
) -> None:
    node_bus = recorder_node[0].bus
    watcher = await connect(secured, WATCHER)
    seen: dict[str, asyncio.Event] = {k: asyncio.Event() for k in ("hb", "status", "log", "event")}

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        seen[msg.subject.split(".")[2]].set()

    try:
        s = watcher.subjects
        for subject in (s.heartbeats(), s.statuses(), s.logs(), s.events(), s.all_vlans()):
            await watcher.nc.subscribe(subject, cb=on_msg)
        await watcher.nc.flush()
        await node_bus.publish(s.status("n1", "t"), StatusUpdate(node="n1", topic="t", status="s"))
        await node_bus.publish(s.log("n1", "info"), LogRecord(node="n1", level="info", message="m"))
        await node_bus.publish(s.event("ns", "vm"), Event(node="n1", namespace="ns", kind="vm"))
        async with asyncio.timeout(10):
            for event in seen.values():
                await event.wait()
    finally:
        await watcher.close()


async def test_a_watcher_publishes_nothing_and_an_operator_cannot_pose_as_a_node(
    secured: Secured, recorder_node: tuple[Node, Recorder]
) -> None:
    errors: list[str] = []

    async def on_error(err: Exception) -> None:
        errors.append(str(err))

    listener = await connect(secured, NODE, "listener")
    got: list[tuple[str, bytes]] = []

    async def on_msg(msg: nats.aio.msg.Msg) -> None:
        got.append((msg.subject, msg.data))

    await listener.nc.subscribe("mb.v1.>", cb=on_msg)
    await listener.nc.flush()
    for role in (WATCHER, OPERATOR):
        creds = secured.creds[role]
        nc = await nats.connect(
            secured.url, user=creds.user, password=creds.password, error_cb=on_error
        )
        try:
            await nc.publish("mb.v1.hb.n1", b"fake")  # a fake heartbeat
            await nc.subscribe("mb.v1.node.n1.cmd")  # stealing a node's commands
            await nc.subscribe("mb.v1.cc.>")  # cc traffic is the nodes' business
            await nc.flush()
            await asyncio.sleep(0.2)
        finally:
            await nc.close()
    await listener.close()
    assert ("mb.v1.hb.n1", b"fake") not in got
    for role_errors in (errors[:3], errors[3:]):
        assert [e.split(" to ")[0] for e in role_errors] == [
            "nats: permissions violation for publish",
            "nats: permissions violation for subscription",
            "nats: permissions violation for subscription",
        ]
    assert recorder_node[1].lines == []


async def test_a_node_with_its_credentials_uses_jetstream_and_discovery(
    tmp_path: Path, secured: Secured
) -> None:
    settings = Settings(
        name="js1",
        nats=[secured.url],
        base=str(tmp_path / "base"),
        heartbeat=0.5,
        credentials=str(secured.auth_dir / "node.json"),
    )
    ready = asyncio.Event()
    task = asyncio.create_task(run_node(settings, ready=ready))
    op = None
    try:
        async with asyncio.timeout(30):
            await ready.wait()
        op = await connect(secured, OPERATOR)
        # vlans add goes to the JetStream KV bucket with the node's rights
        replies = await op.command("js1", "vlans add web 200")
        assert not [r.error for b in replies for r in b.responses if r.error]
        replies = await op.command("js1", ".annotate false vlans")
        assert "web" in replies[-1].rendered
        assert "200" in replies[-1].rendered
        # micro discovery ($SRV) works for the node's own mesh commands
        replies = await op.command("js1", "mesh list")
        assert not [r.error for b in replies for r in b.responses if r.error]
    finally:
        if op is not None:
            await op.close()
        task.cancel()
        await asyncio.wait([task])


async def test_permissions_follow_the_subject_prefix(tmp_path: Path) -> None:
    async with secured_server(tmp_path / "exp", prefix="exp1") as s:
        op = s.creds[OPERATOR]
        # its own prefix: allowed, just nobody serves it
        with pytest.raises(RawNoRespondersError):
            raw_request(s.url, op, "exp1.v1.node.x.cmd")
        with pytest.raises(RawPermissionDeniedError, match=r"publish to mb\.v1\.node\.x\.cmd"):
            raw_request(s.url, op, "mb.v1.node.x.cmd")


def test_the_roles_permissions() -> None:
    watcher = permissions(WATCHER, "mb")
    assert watcher["publish"] == {"deny": [">"]}
    operator = permissions(OPERATOR, "p.q")
    assert operator["publish"] == {
        "allow": ["p.q.v1.node.*.cmd", "p.q.v1.node.*.schema", "p.q.v1.cmd"]
    }
    node = permissions(NODE, "mb")
    assert "$JS.API.>" in node["subscribe"]["allow"]  # type: ignore[index]
    with pytest.raises(ValueError, match="unknown role"):
        permissions("root", "mb")


# --- credentials files -----------------------------------------------------------------


def test_credentials_are_generated_once_and_private(tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    first = ensure_local_credentials(auth)
    again = ensure_local_credentials(auth)
    assert first == again
    assert {c.user for c in first.values()} == {NODE, OPERATOR, WATCHER}
    assert len({c.password for c in first.values()}) == 3
    assert stat.S_IMODE(auth.stat().st_mode) == 0o700
    for path in auth.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first[NODE].password not in repr(first[NODE])


def test_bad_credentials_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SecurityError, match=r"cannot read credentials file .*: no such file"):
        read_credentials(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("user=x")
    with pytest.raises(SecurityError, match="is not JSON"):
        read_credentials(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(SecurityError, match="expected an object with user and password"):
        read_credentials(tmp_path / "list.json")
    with pytest.raises(SecurityError, match="MEGABUS_NATS_PASSWORD is not"):
        env_credentials({"MEGABUS_NATS_USER": "x"})
    creds = env_credentials({"MEGABUS_NATS_USER": "u", "MEGABUS_NATS_PASSWORD": "p"})
    assert creds is not None
    assert (creds.user, creds.password) == ("u", "p")
    with pytest.raises(UsageError, match="cannot read credentials file"):
        resolve_target({"credentials": str(tmp_path / "missing.json")}, {})


def test_local_credentials_go_only_to_the_local_server(tmp_path: Path) -> None:
    ensure_local_credentials(tmp_path / "auth")
    info = {"name": "n", "nats_url": "nats://127.0.0.1:4999", "auth": str(tmp_path / "auth")}
    (tmp_path / "megabus.json").write_text(json.dumps(info))
    env = {"MEGABUS_BASE": str(tmp_path)}
    target = resolve_target({}, env)
    assert target.credentials is not None
    assert target.credentials.user == OPERATOR
    watcher = resolve_target({}, env, role=WATCHER)
    assert watcher.credentials is not None
    assert watcher.credentials.user == WATCHER
    # another server never sees the local node's secrets
    elsewhere = resolve_target({"nats": "nats://10.0.0.9:4222"}, env)
    assert elsewhere.credentials is None
    same = resolve_target({"nats": "nats://127.0.0.1:4999"}, env)
    assert same.credentials is not None
    # files named explicitly win
    explicit = resolve_target({"credentials": str(tmp_path / "auth" / "watcher.json")}, env)
    assert explicit.credentials is not None
    assert explicit.credentials.user == WATCHER
    assert resolve_target({"tls_ca": "/x/ca.pem"}, env).tls is not None
    assert isinstance(resolve_target({"tls_ca": "/x/ca.pem"}, env).tls, TlsFiles)


# --- the README's first command ------------------------------------------------------------


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MEGABUS_")}


@contextlib.asynccontextmanager
async def megabus_node(base: Path, port: int) -> AsyncIterator[dict[str, object]]:
    """``megabus node`` as the README runs it (its own server), on a free port."""
    node = await asyncio.create_subprocess_exec(
        MEGABUS, "node", "-name", "solo", "-base", str(base), "-nats-port", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=_env(),
    )  # fmt: skip
    try:
        info = base / "megabus.json"
        async with asyncio.timeout(30):
            while not info.exists():
                assert node.returncode is None, "the node exited during start-up"
                await asyncio.sleep(0.1)
        yield json.loads(info.read_text())
    finally:
        node.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await node.wait()


async def test_the_readme_node_is_secured_and_its_clients_need_no_flags(tmp_path: Path) -> None:
    base, port = tmp_path / "base", free_port()
    url = f"nats://127.0.0.1:{port}"
    async with megabus_node(base, port) as info:
        auth = base / "auth"
        assert info["auth"] == str(auth)
        secrets_ = {p.name: json.loads(p.read_text())["password"] for p in auth.glob("*.json")}
        assert set(secrets_) == {"node.json", "operator.json", "watcher.json"}
        text = (base / "megabus.json").read_text()
        assert not any(pw in text for pw in secrets_.values())  # paths, never secrets
        assert stat.S_IMODE((base / "nats" / "nats-server.conf").stat().st_mode) == 0o600

        # the README's commands, unchanged
        rc, out, err = await run("-base", str(base), "-e", "version")
        assert (rc, err) == (0, "")
        assert out.startswith("solo: megabus ")
        rc, out, err = await run("-base", str(base), "events", "hb", "-count", "1")
        assert (rc, err) == (0, "")
        assert json.loads(out)["subject"] == "mb.v1.hb.solo"

        # no credentials: refused, clearly
        empty = tmp_path / "elsewhere"
        rc, out, err = await run(
            "-base", str(empty), "-nats", url, "-node", "solo", "-e", "version"
        )
        assert (rc, out) == (2, "")
        assert "authorization refused: the server requires credentials" in err
        # any NATS client without credentials: refused too
        with pytest.raises(RawAuthorizationError):
            await asyncio.to_thread(RawClient.connect, [url])

        # a watcher's credentials cannot run a command; the node is untouched
        watcher = str(auth / "watcher.json")
        rc, out, err = await run(
            "-base", str(base), "-credentials", watcher, "-e", "vlans", "add", "evil", "300"
        )
        assert (rc, out) == (2, "")
        assert "permission denied: user 'watcher' may not run commands on node 'solo'" in err
        assert "operator's credentials" in err
        rc, out, err = await run("-base", str(base), "-e", "vlans")
        assert (rc, out, err) == (0, "", "")

    # restarted, the node keeps its credentials (clients configured once keep working)
    async with megabus_node(base, port):
        again = {p.name: json.loads(p.read_text())["password"] for p in auth.glob("*.json")}
        assert again == secrets_
        rc, out, _ = await run("-base", str(base), "-e", "version")
        assert rc == 0
