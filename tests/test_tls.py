"""TLS on every NATS connection (issue 15, part 2), with a CA the tests make and remove.

The servers here ask for client certificates (mutual TLS) signed by the test
CA, as a node's embedded server does when ``tls-ca`` is set. nats-py and the
stdlib one-shot client both speak it; a server that cannot be verified, and a
client without a certificate the server trusts, are refused with a message
that says so, and the node is untouched.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats.errors
import pytest
from megabuscmd import MEGABUS
from megabuscmd import megabus as run
from natsd import free_port, until
from secure import Recorder, Secured, TestCA, raw_request, recorder_node, secured_server, test_ca

from megabus.bus.connection import Bus
from megabus.bus.errors import (
    AuthorizationError,
    BusConnectError,
    BusError,
    NoRespondersError,
    PermissionDeniedError,
    SecurityError,
)
from megabus.bus.rawclient import ConnectError, RawClient
from megabus.bus.security import (
    OPERATOR,
    WATCHER,
    TlsFiles,
    authorization_conf,
    ensure_local_credentials,
    password_variable,
)
from megabus.bus.server import ServerTLS, server_binary
from megabus.config.settings import Settings
from megabus.handlers.main import Node


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCA]:
    with test_ca(tmp_path_factory.mktemp("ca")) as made:
        yield made
    assert not made.folder.exists()  # the keys are gone with the test


def good(ca: TestCA) -> TlsFiles:
    return TlsFiles(str(ca.ca), str(ca.client_cert), str(ca.client_key))


@pytest.fixture
async def tls_server(tmp_path: Path, ca: TestCA) -> AsyncIterator[Secured]:
    tls = ServerTLS(cert=str(ca.server_cert), key=str(ca.server_key), ca=str(ca.ca))
    async with secured_server(tmp_path / "srv", tls=tls) as s:
        yield s


@pytest.fixture
async def tls_node(
    tmp_path: Path, tls_server: Secured, ca: TestCA
) -> AsyncIterator[tuple[Node, Recorder]]:
    async with recorder_node(
        nats=[tls_server.url],
        base=str(tmp_path / "base"),
        credentials=str(tls_server.auth_dir / "node.json"),
        tls_ca=str(ca.ca),
        tls_cert=str(ca.client_cert),
        tls_key=str(ca.client_key),
    ) as made:
        yield made


async def test_the_server_requires_tls_and_both_clients_speak_it(
    tls_server: Secured, tls_node: tuple[Node, Recorder], ca: TestCA
) -> None:
    op = await Bus.connect(
        [tls_server.url], name="op", credentials=tls_server.creds[OPERATOR], tls=good(ca)
    )
    try:
        assert op.nc.connected_url is not None
        assert (await op.command("n1", "over tls"))[0].rendered == "over tls"
    finally:
        await op.close()
    got = await asyncio.to_thread(
        raw_request,
        tls_server.url,
        tls_server.creds[OPERATOR],
        "mb.v1.node.n1.cmd",
        "raw over tls",
        tls=good(ca),
    )
    assert got[-1]["rendered"] == "raw over tls"
    # a watcher follows heartbeats over TLS
    watcher = await Bus.connect(
        [tls_server.url], name="w", credentials=tls_server.creds[WATCHER], tls=good(ca)
    )
    try:
        sub = await watcher.nc.subscribe(watcher.subjects.heartbeats())
        msg = await sub.next_msg(timeout=5)
        assert msg.subject == "mb.v1.hb.n1"
    finally:
        await watcher.close()
    assert tls_node[1].lines == ["over tls", "raw over tls"]


def _client_files(ca: TestCA, case: str) -> tuple[TlsFiles | None, str]:
    """Files of a client that should be refused, and the words of its refusal."""
    return {
        "server not trusted": (None, "certificate verify failed"),
        "server signed by an unknown CA": (
            TlsFiles(str(ca.rogue_ca), str(ca.client_cert), str(ca.client_key)),
            "certificate verify failed",
        ),
        "no client certificate": (TlsFiles(str(ca.ca)), "certificate required"),
        "client certificate of another CA": (
            TlsFiles(str(ca.ca), str(ca.rogue_cert), str(ca.rogue_key)),
            "TLS",
        ),
    }[case]


CASES = [
    "server not trusted",
    "server signed by an unknown CA",
    "no client certificate",
    "client certificate of another CA",
]


@pytest.mark.parametrize("case", CASES)
async def test_a_wrong_certificate_is_refused_and_the_node_untouched(
    tls_server: Secured, tls_node: tuple[Node, Recorder], ca: TestCA, case: str
) -> None:
    files, words = _client_files(ca, case)
    creds = tls_server.creds[OPERATOR]
    with pytest.raises(BusConnectError, match=words) as refused:
        await Bus.connect([tls_server.url], name="bad", credentials=creds, tls=files, timeout=5)
    assert "TLS" in str(refused.value)
    with pytest.raises(ConnectError, match="TLS") as raw_refused:
        await asyncio.to_thread(RawClient.connect, [tls_server.url], credentials=creds, tls=files)
    if case.startswith("server"):
        assert "certificate verify failed" in str(raw_refused.value)
        assert "-tls-ca" in str(raw_refused.value)
    else:
        assert "client certificate signed by a CA it trusts" in str(raw_refused.value)
    assert tls_node[1].lines == []
    op = await Bus.connect([tls_server.url], name="op", credentials=creds, tls=good(ca))
    try:
        assert (await op.command("n1", "fine"))[0].rendered == "fine"
    finally:
        await op.close()


async def test_the_one_shot_client_keeps_its_tls_session_alive(
    tls_server: Secured, tls_node: tuple[Node, Recorder], ca: TestCA
) -> None:
    # megabus attach asks alive() before each line; over TLS a non-blocking
    # read raises SSLWantReadError, not BlockingIOError.
    def session() -> list[str]:
        out = []
        with RawClient.connect(
            [tls_server.url], credentials=tls_server.creds[OPERATOR], tls=good(ca)
        ) as raw:
            assert raw.secure
            for line in ("one", "two"):
                assert raw.alive()
                payload = json.dumps({"type": "megabus.cmd.v1.request", "line": line}).encode()
                out += [r["rendered"] for r in raw.request_stream("mb.v1.node.n1.cmd", payload)]
            assert raw.alive()
        return out

    assert await asyncio.to_thread(session) == ["one", "two"]


async def test_tls_url_to_a_plain_server_is_refused(nats_url: str) -> None:
    with pytest.raises(ConnectError, match="does not offer TLS"):
        RawClient.connect([nats_url.replace("nats://", "tls://")])


def test_missing_certificate_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SecurityError, match="TLS: no such file"):
        TlsFiles(ca=str(tmp_path / "nope.pem")).ssl_context()
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(SecurityError, match="TLS: cannot load"):
        TlsFiles(ca=str(tmp_path / "junk.pem")).ssl_context()
    with pytest.raises(SecurityError, match="a client key without a client certificate"):
        TlsFiles(key=str(tmp_path / "junk.pem")).ssl_context()


# --- a node's own server with TLS, and the README's clients --------------------------------


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MEGABUS_")}


async def test_a_node_with_tls_on_its_own_server_and_its_local_clients(
    tmp_path: Path, ca: TestCA
) -> None:
    base, port = tmp_path / "base", free_port()
    node = await asyncio.create_subprocess_exec(
        MEGABUS, "node", "-name", "solo", "-base", str(base), "-nats-port", str(port),
        "-tls-server-cert", str(ca.server_cert), "-tls-server-key", str(ca.server_key),
        "-tls-ca", str(ca.ca), "-tls-cert", str(ca.client_cert), "-tls-key", str(ca.client_key),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=_env(),
    )  # fmt: skip
    try:
        info_file = base / "megabus.json"
        async with asyncio.timeout(30):
            while not info_file.exists():
                assert node.returncode is None, "the node exited during start-up"
                await asyncio.sleep(0.1)
        info = json.loads(info_file.read_text())
        assert info["tls_ca"] == str(ca.ca)
        conf = (base / "nats" / "nats-server.conf").read_text()
        assert "verify: true" in conf
        # no flags: megabus.json names the credentials and the TLS files
        rc, out, err = await run("-base", str(base), "-e", "version")
        assert (rc, err) == (0, "")
        assert out.startswith("solo: ")
        rc, out, err = await run("-base", str(base), "events", "hb", "-count", "1")
        assert (rc, err) == (0, "")
        # a client that trusts another CA refuses the server, clearly
        rc, out, err = await run("-base", str(base), "-tls-ca", str(ca.rogue_ca), "-e", "version")
        assert (rc, out) == (2, "")
        assert "TLS: certificate verify failed" in err
        # a plain client (no TLS files at all) cannot verify it either
        operator = str(base / "auth" / "operator.json")
        rc, out, err = await run(
            "-nats", f"nats://127.0.0.1:{port}", "-credentials", operator,
            "-base", str(tmp_path / "none"), "-node", "solo", "-e", "version",
        )  # fmt: skip
        assert rc == 2
        assert "certificate verify failed" in err
        # a missing CA file is named
        rc, out, err = await run("-base", str(base), "-tls-ca", "/nonexistent.pem", "-e", "version")
        assert rc == 2
        assert "TLS: no such file /nonexistent.pem" in err
    finally:
        node.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await node.wait()
    assert node.returncode == 0


# --- ops/nats/secure: the configs of a secured site --------------------------------------

SECURE = Path(__file__).resolve().parent.parent / "ops" / "nats" / "secure"


def test_the_secure_auth_conf_is_the_one_the_code_makes() -> None:
    # the roles of ops/nats are bus/security.py's, never a hand-kept copy
    assert (SECURE / "auth.conf").read_text() == authorization_conf("mb")


def _site_conf(name: str, ca: TestCA, ports: dict[str, int], store: Path) -> str:
    """An ops/nats/secure config on loopback: free ports, the test CA, a temporary store."""
    text = (SECURE / name).read_text()
    text = text.replace("/etc/nats/tls/server.pem", str(ca.server_cert))
    text = text.replace("/etc/nats/tls/server.key", str(ca.server_key))
    text = text.replace("/etc/nats/tls/ca.pem", str(ca.ca))
    text = text.replace("/var/lib/nats/jetstream", str(store))
    text = re.sub(r"\nhttp: .*", "", text)
    for i in (1, 2, 3):
        text = text.replace(f"nats://nats-{i}:6222", f"nats://127.0.0.1:{ports[f'route{i}']}")
        text = text.replace(f"nats-{i}:7422", f"127.0.0.1:{ports[f'leaf{i}']}")
    return text


async def test_the_secure_ops_configs_make_a_secured_r3_cluster(tmp_path: Path, ca: TestCA) -> None:
    ports = {f"{k}{i}": free_port() for k in ("client", "route", "leaf") for i in (1, 2, 3)}
    ports["local"] = free_port()
    creds = ensure_local_credentials(tmp_path / "auth")
    env = {password_variable(role): c.password for role, c in creds.items()}
    env.update(HOSTNAME="h1", MEGABUS_LEAF_PASSWORD="leaf-secret")
    (tmp_path / "auth.conf").write_text((SECURE / "auth.conf").read_text())
    remotes = _site_conf("leaf-remotes.conf.example", ca, ports, tmp_path / "unused")
    (tmp_path / "leaf-remotes.conf").write_text(remotes.replace("LEAF_PASSWORD", "leaf-secret"))
    procs: list[asyncio.subprocess.Process] = []
    try:
        for i in (1, 2, 3):
            text = _site_conf(f"server-{i}.conf", ca, ports, tmp_path / f"js{i}")
            for old, key in (("4222", "client"), ("6222", "route"), ("7422", "leaf")):
                text = text.replace(
                    f"listen: 0.0.0.0:{old}", f"listen: 127.0.0.1:{ports[f'{key}{i}']}"
                )
            procs.append(await _run_server(tmp_path / f"server-{i}.conf", text, env))
        leaf = _site_conf("leaf.conf", ca, ports, tmp_path / "unused")
        leaf = leaf.replace("listen: 127.0.0.1:4222", f"listen: 127.0.0.1:{ports['local']}")
        procs.append(await _run_server(tmp_path / "leaf.conf", leaf, env))
        hubs = [f"nats://127.0.0.1:{ports[f'client{i}']}" for i in (1, 2, 3)]
        node = Node(
            Settings(
                name="h1", nats=hubs, base=str(tmp_path / "base"),
                credentials=str(tmp_path / "auth" / "node.json"),
                tls_ca=str(ca.ca), tls_cert=str(ca.client_cert), tls_key=str(ca.client_key),
            )
        )  # fmt: skip
        async with asyncio.timeout(60):
            while True:  # the hubs elect a JetStream leader first
                try:
                    await node.start()
                    break
                except (BusError, TimeoutError, nats.errors.Error):
                    await asyncio.sleep(0.5)
        try:
            local = f"nats://127.0.0.1:{ports['local']}"
            op = await Bus.connect([local], name="op", credentials=creds[OPERATOR], tls=good(ca))
            try:
                async with asyncio.timeout(30):  # the leaf learns the node's subjects
                    while True:
                        try:
                            (reply,) = await op.command("h1", "vlans add dmz 200")
                            break
                        except NoRespondersError:
                            await asyncio.sleep(0.2)
                assert [r.error for r in reply.responses] == [""]
            finally:
                await op.close()
            watcher = await Bus.connect([local], name="w", credentials=creds[WATCHER], tls=good(ca))
            try:
                with pytest.raises(PermissionDeniedError):
                    await watcher.command("h1", "vlans add evil 300")
            finally:
                await watcher.close()
            # nobody without credentials, and nobody without the site's certificate
            with pytest.raises(AuthorizationError):
                await Bus.connect([hubs[0]], name="anon", tls=good(ca), timeout=5)
            with pytest.raises(BusConnectError, match="TLS"):
                await Bus.connect(
                    [hubs[1]], name="rogue", credentials=creds[OPERATOR],
                    tls=TlsFiles(str(ca.ca), str(ca.rogue_cert), str(ca.rogue_key)), timeout=5,
                )  # fmt: skip
        finally:
            await node.stop()
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()


async def _run_server(conf: Path, text: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    await asyncio.to_thread(conf.write_text, text)
    proc = await asyncio.create_subprocess_exec(
        server_binary(), "-c", str(conf),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, env={**os.environ, **env},
    )  # fmt: skip
    port = int(re.search(r"listen: 127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]
    await until(lambda: _listening(port), within=10)
    return proc


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
