"""The wheel holds every module and the console script.

The editable install imports modules straight from the repository, so a
module missing from the package list would pass every other test while the
released wheel is broken (style.md section 4, row 5).
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOTS = ("bus", "handlers", "agent", "router", "cli", "client", "config")


def _copy_sources(dest: Path) -> None:
    # Build from a copy: setuptools writes build/ and *.egg-info beside the
    # sources, which would race with other builds in a shared checkout.
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for root in ROOTS:
        shutil.copytree(
            REPO / root, dest / root, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    src = tmp_path_factory.mktemp("src")
    out = tmp_path_factory.mktemp("wheel")
    _copy_sources(src)
    # An isolated build, as a release would be: the build backend comes from PyPI.
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (path,) = out.glob("megabus-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_holds_every_module(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    sources = sorted(
        p.relative_to(REPO).as_posix() for root in ROOTS for p in (REPO / root).rglob("*.py")
    )
    assert sources, "no sources found"
    missing = [s for s in sources if f"megabus/{s}" not in names]
    assert not missing, f"missing from the wheel: {missing}"


def test_wheel_has_no_top_level_root_packages(wheel: zipfile.ZipFile) -> None:
    tops = {n.split("/")[0] for n in wheel.namelist()}
    assert not tops & set(ROOTS), f"root folders leaked as top-level packages: {tops & set(ROOTS)}"


def test_wheel_declares_console_script(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel.read(entry_points).decode())
    assert parser["console_scripts"]["megabus"] == "megabus.cli.main:main"
