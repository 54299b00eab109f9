"""minimega 2.8's own test scripts, byte for byte, against a real node.

Every script the compat README names (its ``issue: names`` lines) runs and
must match its ``.want``, except the scripts of :data:`EXPECTED_FAILURES`,
whose issue has not landed: those are strict expected failures, so one that
starts to pass fails the suite until it leaves the table. An expected
failure stops at its first line that departs from its ``.want`` (it need
not sit through the script's ``shell sleep``s).

A clone without ``../shared`` skips these tests and says how to point them
at minimega 2.8's own ``tests/`` folder; in CI (``CI`` set) they fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from compat import (
    README_GROUPS,
    REPO,
    compat_node,
    compat_problem,
    diff,
    run_script,
    script_groups,
)
from ovsfix import ovs  # noqa: F401  (the session fixture, which minitest asks for)

from megabus.bus.connection import Bus

#: Scripts that must fail today, each with the reason.
EXPECTED_FAILURES = {}


def _params() -> list[object]:
    if compat_problem():
        # no scripts to name: one test, which the compat_dir fixture skips (fails in CI)
        return [pytest.param("", id="no-compat-scripts")]
    params: list[object] = []
    for issue, names in script_groups().items():
        for name in names:
            reason = EXPECTED_FAILURES.get(name)
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(pytest.param(name, id=f"{issue}-{name}", marks=marks))
    return params


@pytest.fixture
async def minitest(
    compat_dir: Path, nats_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Bus]:
    # the scripts use bridges; no switch is started when there are no scripts
    request.getfixturevalue("ovs")
    async with compat_node(nats_url) as bus:
        yield bus


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", _params())
async def test_script_matches_want(minitest: Bus, compat_dir: Path, name: str) -> None:
    # an expected failure stops at its first mismatch; one that passes runs to its end
    got = await run_script(minitest, name, compat_dir, stop_at_mismatch=name in EXPECTED_FAILURES)
    want = (compat_dir / f"{name}.want").read_text()
    assert got == want, f"{name}: got != want\n{diff(name, got, want)}"


def test_readme_names_scripts_that_exist(compat_dir: Path) -> None:
    groups = script_groups()
    names = [name for group in groups.values() for name in group]
    assert groups["foundation"], "the compat README lists no foundation scripts"
    assert len(names) == len(set(names)), "a script is listed twice"
    for name in names:
        assert (compat_dir / name).is_file(), f"{name} listed but missing"
        assert (compat_dir / f"{name}.want").is_file(), f"{name}.want missing"
    # the table names listed scripts only, and the copy for README-less folders is current
    assert set(EXPECTED_FAILURES) <= set(names)
    assert {n for group in README_GROUPS.values() for n in group} <= set(names)


def _pytest(folder: Path, ci: str | None, *targets: str) -> subprocess.CompletedProcess[str]:
    """pytest on ``targets`` in a subprocess with ``folder`` as its compat folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "MEGABUS_COMPAT_DIR")}
    env["MEGABUS_COMPAT_DIR"] = str(folder)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rsfE", *targets],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_without_scripts_the_compat_tests_skip_and_fail_in_ci(tmp_path: Path) -> None:
    targets = (
        "tests/test_compat.py", "-k", "not without_scripts",  # not this test again
        # another module that reads a script (through the compat_dir fixture)
        "tests/test_language_tabwriter.py::test_vm_config_dump_layout",
    )  # fmt: skip
    hint = "MEGABUS_COMPAT_DIR=/path/to/minimega/tests"

    missing, empty = tmp_path / "no-such-folder", tmp_path / "empty"
    empty.mkdir()
    # not CI: CI unset, or set but empty
    for folder, ci, why in ((missing, None, "no folder"), (empty, "", "no prolog in")):
        run = _pytest(folder, ci, *targets)
        out = run.stdout + run.stderr
        assert run.returncode == 0, out
        assert "3 skipped" in out, out
        assert out.count(f"{why} {folder}; ") == 3, out
        assert out.count(hint) == 3, out
        for outcome in ("passed", "failed", "error"):
            assert outcome not in out, out

    run = _pytest(missing, "true", *targets)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "skipped" not in out, out
    assert "3 errors" in out, out
    assert out.count("CI is set: the compat scripts must be there") >= 3, out
