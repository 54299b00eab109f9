"""The agent ships as one file (``ops/agent_bundle.py``) and runs on Python 3.9.

Python 3.9 is the oldest guest Python the agent promises. The machine has it
(pyenv's ``3.9.x``; ``python3.9`` on ``PATH`` elsewhere); msgspec 0.20, the
last release with 3.9 wheels, is installed for it once into
``build/py39-site`` with pip. Every module of the bundle must compile under
3.9's grammar, and the bundle run by 3.9 must serve a real node.
"""

from __future__ import annotations

import asyncio
import fcntl
import glob
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ccworld import CcWorld, cc_world, free_port, wait_for

REPO = Path(__file__).resolve().parent.parent
SITE = REPO / "build" / "py39-site"
#: The newest msgspec with wheels for Python 3.9.
MSGSPEC_39 = "msgspec==0.20.0"
U = "39393939-3939-4393-8393-393939393939"


def python39() -> str:
    """A Python 3.9 interpreter (the test fails without one: it is what it checks)."""
    found = shutil.which("python3.9")
    candidates = [found] if found else []
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(os.path.join(root, "versions", "3.9*", "bin", "python3.9")))
    for exe in candidates:
        probe = subprocess.run(
            [exe, "-c", "import sys; print(sys.version_info[:2] == (3, 9))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == "True":
            return exe
    if not os.environ.get("CI"):
        # Debian 12 packages no 3.9: a developer's plain Debian box may have none.
        # CI's machines do, and there a missing 3.9 fails instead of skipping.
        pytest.skip("no Python 3.9 here (python3.9 on PATH or pyenv's 3.9.x)")
    raise AssertionError("no Python 3.9 found (python3.9 on PATH or pyenv's 3.9.x)")


def msgspec_for(python: str) -> Path:
    """A folder with msgspec for ``python`` (pip-installed once, under a lock)."""
    SITE.parent.mkdir(parents=True, exist_ok=True)
    with open(SITE.parent / ".py39-site.lock", "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (SITE / "msgspec" / "__init__.py").exists():
            out = subprocess.run(
                [python, "-m", "pip", "install", "-q", "--target", str(SITE), MSGSPEC_39],
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            assert out.returncode == 0, out.stderr[-2000:]
    return SITE


def bundle(out: Path) -> Path:
    proc = subprocess.run(
        [sys.executable, str(REPO / "ops" / "agent_bundle.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundle(tmp_path_factory.mktemp("bundle") / "megabus-agent.pyz")


def test_bundle_holds_the_agent_and_the_wire_only(pyz: Path) -> None:
    with zipfile.ZipFile(pyz) as zf:
        names = set(zf.namelist())
    assert "__main__.py" in names
    assert "megabus/bus/cc_messages.py" in names
    assert {n for n in names if n.endswith(".py")} - {"__main__.py"} == {
        "megabus/__init__.py",
        "megabus/agent/__init__.py",
        "megabus/bus/__init__.py",
        "megabus/bus/cc_messages.py",
        *(f"megabus/agent/{p.name}" for p in (REPO / "agent").glob("*.py")),
    }
    # no nats-py, no node: nothing else of megabus
    assert not [n for n in names if n.startswith(("megabus/handlers", "megabus/cli"))]


def test_bundle_is_rebuilt_only_when_its_sources_change(tmp_path: Path) -> None:
    first = bundle(tmp_path / "a.pyz")
    before = first.stat().st_mtime_ns, first.read_bytes()
    again = bundle(tmp_path / "a.pyz")
    assert (again.stat().st_mtime_ns, again.read_bytes()) == before
    other = bundle(tmp_path / "b.pyz")
    assert other.read_bytes() == before[1]  # same sources, same bytes


def test_bundle_runs_on_this_python_and_explains_missing_msgspec(pyz: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(pyz), "-version"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0
    assert out.stdout.startswith("megabus agent ")
    # -S: no site-packages, so no msgspec: a clear message, no traceback
    bare = subprocess.run(
        [sys.executable, "-S", str(pyz), "-version"], capture_output=True, text=True, check=False
    )
    assert bare.returncode != 0
    assert "needs msgspec" in bare.stderr
    assert "Traceback" not in bare.stderr


def test_every_agent_module_compiles_with_python_3_9(pyz: Path, tmp_path: Path) -> None:
    py39 = python39()
    with zipfile.ZipFile(pyz) as zf:
        zf.extractall(tmp_path / "src")
    sources = sorted(str(p) for p in (tmp_path / "src").rglob("*.py"))
    out = subprocess.run(
        [py39, "-m", "py_compile", *sources], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    assert len(sources) >= 10


@pytest.fixture
async def world(nats_url: str, tmp_path: Path) -> AsyncIterator[CcWorld]:
    async with cc_world(nats_url, tmp_path / "node") as w:
        yield w


async def test_bundle_on_python_3_9_serves_a_real_node(world: CcWorld, pyz: Path) -> None:
    py39 = python39()
    site = await asyncio.to_thread(msgspec_for, py39)
    port = free_port()
    await world.ok(f"cc listen {port}")
    path = world.base / "agents" / "py39"
    path.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = await asyncio.create_subprocess_exec(
        py39, str(pyz), "-parent", "127.0.0.1", "-port", str(port), "-uuid", U,
        "-path", str(path), "-retry", "0.2", "-level", "debug",
        "-logfile", str(path / "agent.log"), env=env,
    )  # fmt: skip
    world.agents.append(proc)

    async def connected() -> bool:
        return U in await world.clients()

    await wait_for(connected, "the 3.9 agent connected")
    world.files.mkdir(parents=True, exist_ok=True)
    (world.files / "hello.txt").write_text("from the node\n")
    await world.ok("cc send hello.txt")
    await world.ok(f"cc exec sh -c 'cat {path}/files/hello.txt; exit 4'")
    await world.ok(f"cc recv {path}/files/hello.txt")
    responses = world.files / "miniccc_responses"

    async def answered() -> bool:
        back = responses / "3" / U / str(path / "files" / "hello.txt").lstrip("/")
        return (responses / "2" / U / "exitcode").exists() and back.exists()

    await wait_for(answered, "the 3.9 agent's responses")
    assert (responses / "2" / U / "stdout").read_text() == "from the node\n"
    assert (responses / "2" / U / "exitcode").read_text() == "4"
    rows = await world.rows("cc clients")
    assert [r[0] for r in rows] == [U]
    # the agent's version, as the node saw it

    srv = await world.state.cc.server("minimega")
    assert srv.clients[U].info.version
    log = (path / "agent.log").read_text()
    assert "Traceback" not in log


def test_no_agent_module_needs_more_than_python_3_9() -> None:
    # A static check that runs everywhere, with or without a 3.9 interpreter.
    sources = sorted(str(p) for p in (REPO / "agent").glob("*.py"))
    sources.append(str(REPO / "bus" / "cc_messages.py"))
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "vermin"),
            "--no-tips",
            "--violations",
            "-t=3.9-",
            *sources,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
