"""The ``megabus status`` view, rendered with a capture console."""

from __future__ import annotations

from rich.console import Console

from megabus.bus.messages import Heartbeat, LogRecord, StatusUpdate
from megabus.cli.status import StatusState, render


def text_of(state: StatusState, now: float) -> str:
    console = Console(width=120, record=True, color_system=None)
    with console.capture() as capture:
        console.print(render(state, now))
    return capture.get()


def heartbeat(node: str, **kw: float) -> Heartbeat:
    return Heartbeat(
        node=node,
        version="0.1.0",
        uptime=kw.get("uptime", 60.0),
        interval=2.0,
        vms=3,
        load=0.5,
        cpus=2,
        mem_used=512,
        mem_total=2048,
    )


def test_nodes_show_uptime_load_memory_and_vms() -> None:
    state = StatusState()
    state.heartbeat(heartbeat("alpha", uptime=3600.0), at=100.0)
    out = text_of(state, now=101.0)
    assert "alpha" in out
    assert "up" in out
    assert "1h00m01s" in out  # uptime grows with the time since the heartbeat
    assert "0.50/2" in out
    assert "512/2048 MB" in out
    assert "1s ago" in out


def test_node_silent_for_three_intervals_is_gone() -> None:
    state = StatusState()
    state.heartbeat(heartbeat("alpha"), at=100.0)
    state.heartbeat(heartbeat("beta"), at=90.0)
    lines = text_of(state, now=100.5).splitlines()
    (alpha,) = [ln for ln in lines if "alpha" in ln]
    (beta,) = [ln for ln in lines if "beta" in ln]
    assert "gone" not in alpha
    assert "gone" in beta


def test_status_updates_show_progress_and_newest_first() -> None:
    state = StatusState()
    state.status(StatusUpdate(node="alpha", topic="launch", status="launching 4 vms"))
    state.status(StatusUpdate(node="alpha", topic="copy", status="copying disk", progress=0.5))
    out = text_of(state, now=0.0)
    assert "50%" in out
    assert out.index("copying disk") < out.index("launching 4 vms")


def test_status_keeps_the_latest_per_topic() -> None:
    state = StatusState()
    state.status(StatusUpdate(node="alpha", topic="copy", status="copying", progress=0.1))
    state.status(StatusUpdate(node="alpha", topic="copy", status="copying", progress=0.9))
    out = text_of(state, now=0.0)
    assert "90%" in out
    assert "10%" not in out


def test_recent_logs_are_listed() -> None:
    state = StatusState()
    for i in range(15):
        state.log(LogRecord(node="alpha", level="error", message=f"failure {i}"))
    out = text_of(state, now=0.0)
    assert "failure 14" in out
    # only the last ten stay
    assert "failure 4 " not in out
