"""``host``: 2.8's columns, single fields, commitments from the VM table, one row per host."""

from __future__ import annotations

import os
import re
from pathlib import Path

from meshnodes import cluster

from megabus.handlers.commands.host import COLUMNS
from megabus.handlers.language.gotime import format_seconds as go_duration


async def test_host_has_2_8_columns_and_single_fields(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a"]) as c:
        (resp,) = await c.ok("a", "host")
        assert resp.header == list(COLUMNS)
        assert resp.header == [
            "cpus", "load", "memused", "memtotal", "rx", "tx", "vms", "vmlimit",
            "cpucommit", "memcommit", "netcommit", "uptime",
        ]  # fmt: skip
        row = dict(zip(COLUMNS, (resp.tabular or [[]])[0], strict=True))
        assert row["cpus"] == str(os.cpu_count())
        assert re.fullmatch(r"\d+\.\d+ \d+\.\d+ \d+\.\d+", row["load"])
        assert int(row["memtotal"]) > int(row["memused"]) > 0
        assert (row["rx"], row["tx"], row["vms"], row["vmlimit"]) == ("0.0", "0.0", "0", "-1")
        assert re.fullmatch(r"(\d+h)?(\d+m)?\d+(\.\d+)?s", row["uptime"])
        assert await c.text("a", "host name") == "a"
        assert await c.text("a", "host cpus") == str(os.cpu_count())
        assert await c.text("a", "host vmlimit") == "-1"


async def test_commitments_follow_the_vms(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a"]) as c:
        await c.ok("a", "vm config vcpus 2")
        await c.ok("a", "vm config memory 512")
        await c.ok("a", "vm config coschedule 3")
        await c.ok("a", "vm launch kvm x[0-1]")
        assert await c.text("a", "host vms") == "2"
        assert await c.text("a", "host cpucommit") == "4"
        assert await c.text("a", "host memcommit") == "1024"
        assert await c.text("a", "host netcommit") == "0"
        assert await c.text("a", "host vmlimit") == "4"
        await c.ok("a", "vm kill x0")
        # a dead VM holds nothing, but is still a VM of the node
        assert await c.text("a", "host cpucommit") == "2"
        assert await c.text("a", "host vms") == "2"


async def test_host_answers_for_every_host_of_the_namespace(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a", "b"]) as c:
        await c.ok("a", "namespace exp ns add-hosts localhost")
        responses = await c.ok("a", "namespace exp host")
        assert sorted(r.host for r in responses) == ["a", "b"]
        assert all(r.data["name"] == r.host for r in responses)


def test_go_durations() -> None:
    assert go_duration(2641.71) == "44m1.71s"
    assert go_duration(90) == "1m30s"
    assert go_duration(3600 * 26 + 5) == "26h0m5s"
    assert go_duration(0.5) == "500ms"
    assert go_duration(0) == "0s"


async def test_host_accel_says_how_kvm_guests_run(nats_url: str, tmp_path: Path) -> None:
    async with cluster(nats_url, tmp_path, ["a"]) as c:
        want = "kvm" if os.access("/dev/kvm", os.R_OK | os.W_OK) else "tcg"
        assert await c.text("a", "host accel") == want
