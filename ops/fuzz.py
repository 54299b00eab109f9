#!/usr/bin/env python3
"""Fuzz a live node with random and mutated command lines and bus messages; print ONE JSON object.

It starts ``megabus node`` in a temporary base with its own (secured) nats-server
on a free loopback port, then sends ``--cases`` cases over the bus as an
operator, ``--concurrency`` at a time:

* command lines (about two thirds): built from the grammar's own patterns with
  random arguments, or mutations of such lines (characters flipped, inserted
  or cut, quotes and escapes, ranges, words swapped or repeated);
* bus messages: garbage bytes, and ``CommandRequest`` JSON mutated at the byte
  or field level (wrong tags, wrong types, huge or non-UTF-8 lines), sent raw
  to the node's command subject.

Every case must be answered (a last ``CommandReply`` or an ``ErrorReply``)
within ``--timeout`` seconds. Findings are cases left unanswered and responses
that say ``internal error`` (an exception the command did not turn into its
own error). At the end the node must still be alive with no request left
running, and its resident memory is compared with the one after warm-up.
Every few thousand cases the fuzzer clears what the cases piled up (history,
VLAN aliases, vm config, namespaces), so memory measures leaks, not state.

Safety: the node runs as root, so a line is sent only when it does not
compile (the node refuses it too) or compiles, subcommands included, to an
allow-listed pattern (``vm config``, ``vm info``, ``vlans``, ``namespace``,
``echo``, the output builtins, ``pipe``, ``plumb``, ``cc``...) and passes
that pattern's own check: ``shell`` and ``background`` only run ``echo`` or
``true`` (argument lists, never ``/bin/sh``); ``plumb`` only joins pipes, no
element may name a program; ``pipe ... via`` and ``cc mount`` never go; cc
commands are queued in namespaces where no agent ever connects. ``file
delete``, ``.alias`` and the like never reach the node, however a mutation
spells them (minicli accepts unique prefixes, which is why the check compiles
the line with the node's own grammar instead of matching words).

``vm launch`` goes only as lines the fuzzer writes itself, in a namespace of
its own (``fuzzvms``) that no random line may name: containers of the
``minicccfs`` image (``ops/images.py``; ``--images``), no network, killed and
flushed every few launches. As root the whole run (fuzzer, node, its
nats-server, cc listeners, containers) happens in a network namespace made
for it (``unshare --net``), so nothing listens on the host's network.

Run with the repo's venv: ``.venv/bin/python ops/fuzz.py --cases 100000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import nats.errors

from megabus.bus.codec import encode
from megabus.bus.connection import Bus
from megabus.bus.errors import BusError
from megabus.bus.messages import (
    CommandReply,
    CommandRequest,
    CommandStream,
    CommandWorking,
    ErrorReply,
)
from megabus.bus.security import read_credentials
from megabus.handlers import commands, pipes
from megabus.handlers.language import Command, Grammar, LanguageError
from megabus.handlers.node import dispatch

MEGABUS = str(Path(sys.executable).parent / "megabus")
REPO = Path(__file__).resolve().parent.parent
#: Set in the environment of the copy of this program that runs in its own netns.
NETNS_MARK = "MEGABUS_FUZZ_NETNS"

#: Patterns a case may run (the pattern that matched starts with one of these).
SAFE = (
    "echo",
    "version",
    "help",
    "history",
    "clear history",
    "vlans",
    "clear vlans",
    "vm config",
    "clear vm config",
    "vm info",
    "namespace",
    "clear namespace",
    "file <list,>",
    ".columns",
    ".filter",
    ".annotate",
    ".headers",
    ".csv",
    ".json",
    ".sort",
    ".compress",
    ".record",
    ".preprocess",
    "pipe",
    "clear pipe",
    "plumb",
    "clear plumb",
    "cc",
    "clear cc",
    "shell",
    "background",
)
#: ... except these (they run other code, write files, or change the node's process).
UNSAFE = (
    ".alias", ".unalias", ".env", "vm config clone", "pipe <pipe> <via,>", "cc mount <",
    "clear cc mount", "clear cc <mount,>",
)  # fmt: skip
#: Programs ``shell`` and ``background`` may run (with any arguments: no shell reads them).
SHELL_OK = ("echo", "true")
#: The namespace only the fuzzer's own ``vm launch`` lines use.
VM_NAMESPACE = "fuzzvms"
#: Share of cases that are ``vm launch`` and friends (when an image is there).
LAUNCH_SHARE = 0.01
#: Launches between two ``vm kill all`` + ``vm flush`` in :data:`VM_NAMESPACE`.
LAUNCHES_KEPT = 6

VALUES = [
    "", "0", "1", "-1", "101", "4096", "4097", "2147483648", "foo", "LAN", "ns0", "ns1",
    "vm[0-3]", "vm[1-2147483647]", "[", "]", "a,b", "x.qcow2", "/etc/passwd", "../../x",
    "true", "false", "00:11:22:33:44:55", "e1000", "virtio-net-pci", "mega_bridge",
    "name,state", "name=vm0", "1024", "2", "kvm", "container", "host", "all", "*", "é", "\\n",
]  # fmt: skip
SPECIAL = [*"\"'\\#[]-,:/. \t*{}=$", "\x00", "\u202e", "\ud7ff", "${HOME}", "$"]


class Cases:
    """Random command lines and bus messages, only safe ones."""

    def __init__(self, rng: random.Random, grammar: Grammar) -> None:
        self.rng = rng
        self.grammar = grammar
        self.patterns = [
            p for _, p in grammar.patterns() if p.startswith(SAFE) and not p.startswith(UNSAFE)
        ]
        self.seeds: list[str] = []
        self.skipped = 0
        #: ``vm launch`` lines go only when the fuzzer has an image for them.
        self.launching = False
        self.launches = 0
        #: Payloads of a --trace file to send again, last first.
        self.replay: list[bytes] = []

    # --- command lines ----------------------------------------------------------

    def _fill(self, pattern: str, depth: int) -> str:
        out: list[str] = []
        r = self.rng
        for token in pattern.split():
            if token.startswith("(") and token.endswith(")"):
                if depth < 2:
                    out.append(self._fill(r.choice(self.patterns), depth + 1))
            elif token.startswith("<") and "," in token:
                out.append(r.choice([c for c in token.strip("<>").split(",") if c]))
            elif token.startswith("["):
                if "," in token:
                    options = [c for c in token.strip("[]").split(",") if c]
                    if options and r.random() < 0.5:
                        out.append(r.choice(options))
                elif r.random() < 0.5:
                    out.append(r.choice(VALUES))
            elif token.startswith("<"):
                count = r.randint(0, 3) if token.endswith("...") else 1
                out.extend(r.choice(VALUES) for _ in range(count))
            else:
                out.append(token)
        return " ".join(w if w and " " not in w else json.dumps(w) for w in out)

    def _mutate(self, line: str) -> str:
        r = self.rng
        for _ in range(r.randint(1, 3)):
            op = r.randrange(7)
            at = r.randint(0, len(line))
            if op == 0 and line:  # flip a character
                i = r.randrange(len(line))
                line = line[:i] + chr(r.randrange(1, 0x2FF)) + line[i + 1 :]
            elif op == 1:  # insert something that means something
                line = line[:at] + r.choice(SPECIAL) + line[at:]
            elif op == 2 and line:  # cut a span
                end = min(len(line), at + r.randint(1, 8))
                line = line[:at] + line[end:]
            elif op == 3:  # repeat or swap words
                words = line.split(" ")
                if len(words) > 1:
                    i, j = r.randrange(len(words)), r.randrange(len(words))
                    words[i], words[j] = words[j], words[i]
                words.insert(r.randrange(len(words) + 1), r.choice(words))
                line = " ".join(words)
            elif op == 4:  # a range
                line = (
                    line[:at]
                    + f"x[{r.randint(0, 9)}-{r.choice([3, 99, 10**6, 2**31])}]"
                    + line[at:]
                )
            elif op == 5:  # a long word
                line = line[:at] + "y" * r.choice([100, 5000, 70000]) + line[at:]
            else:  # truncate
                line = line[:at]
        return line

    def safe(self, line: str) -> bool:
        """Whether ``line`` either fails to compile or runs only allow-listed patterns."""
        try:
            cmd: Command | None = self.grammar.compile(line)
        except LanguageError:
            return True
        except Exception:  # a compile bug: the node answers it; report, do not run it blind
            return True
        while cmd is not None:
            if not cmd.pattern.startswith(SAFE) or cmd.pattern.startswith(UNSAFE):
                return False
            if not self._pattern_safe(cmd):
                return False
            cmd = cmd.subcommand
        return True

    @staticmethod
    def _pattern_safe(cmd: Command) -> bool:
        """The checks of patterns that are safe only with some arguments."""
        words = [*cmd.string_args.values(), *(w for v in cmd.list_args.values() for w in v)]
        if any(VM_NAMESPACE in w for w in words):
            return False  # the launch namespace is the fuzzer's own
        if cmd.pattern.startswith("clear namespace") and cmd.arg("name") == "all":
            return False  # ... and so is its vm config
        if cmd.pattern.startswith(("shell", "background")):
            argv = cmd.items("command")
            return bool(argv) and argv[0] in SHELL_OK
        if cmd.pattern.startswith("plumb <"):
            elements = [cmd.arg("src"), *cmd.items("dst")]
            return all(pipes.program(e) is None for e in elements)
        return True

    def vm_line(self) -> str:
        """A ``vm`` line of the fuzzer's own in :data:`VM_NAMESPACE` (never mutated)."""
        r = self.rng
        self.launches += 1
        if self.launches % LAUNCHES_KEPT == 0:
            return f"namespace {VM_NAMESPACE} vm kill all"
        if self.launches % LAUNCHES_KEPT == 1 and self.launches > 1:
            return f"namespace {VM_NAMESPACE} vm flush"
        name = r.choice(["c", "c[1-2]", "", "é", "x" * 60, "c[0-1]", "v" + str(r.randrange(99))])
        return r.choice(
            [
                f"namespace {VM_NAMESPACE} vm launch container {name}".rstrip(),
                f"namespace {VM_NAMESPACE} vm start all",
                f"namespace {VM_NAMESPACE} vm stop all",
                f"namespace {VM_NAMESPACE} vm info",
                f"namespace {VM_NAMESPACE} cc exec hostname",
            ]
        )

    def line(self) -> str:
        r = self.rng
        if self.launching and r.random() < LAUNCH_SHARE:
            return self.vm_line()
        while True:
            if self.seeds and r.random() < 0.6:
                candidate = self._mutate(r.choice(self.seeds))
            else:
                candidate = self._fill(r.choice(self.patterns), 0)
                if len(self.seeds) < 500:
                    self.seeds.append(candidate)
            if self.safe(candidate):
                return candidate
            self.skipped += 1

    # --- raw bus messages ----------------------------------------------------------

    def message(self) -> bytes:
        """A payload for the command subject: garbage, or a mutated request."""
        r = self.rng
        kind = r.randrange(6)
        if kind == 0:
            return r.randbytes(r.randint(0, 300))
        request: dict[str, Any] = {"type": "megabus.cmd.v1.request", "line": self.line()}
        if kind == 1:  # fields of the wrong type or name
            key = r.choice(["line", "namespace", "source", "record", "client", "type", "extra"])
            request[key] = r.choice([None, 7, 1.5, [], {}, True, "x", "megabus.cmd.v1.reply"])
        elif kind == 2:  # optional fields set to odd values
            request["namespace"] = r.choice(["", "ns0", "ns1", "é", "a b", "%", "ns0.x"])
            request["source"] = r.choice(["", "meshage", "ns0"])
            request["record"] = r.random() < 0.5
        data = msgspec.json.encode(request)
        if kind == 3:  # bytes flipped
            buf = bytearray(data)
            for _ in range(r.randint(1, 4)):
                buf[r.randrange(len(buf))] = r.randrange(256)
            data = bytes(buf)
        elif kind == 4:  # cut short
            data = data[: r.randint(0, len(data))]
        elif kind == 5:  # deeply nested
            depth = r.choice([10, 1000, 100000])
            data = b'{"type":"megabus.cmd.v1.request","line":' + b"[" * depth + b"]" * depth + b"}"
        return data if self._message_safe(data) else b"{not json"

    def _message_safe(self, data: bytes) -> bool:
        # A mutated request that still decodes runs like any line: check it as one.
        try:
            req = msgspec.json.decode(data, type=CommandRequest)
        except msgspec.DecodeError:
            return True
        if not self.safe(req.line):
            self.skipped += 1
            return False
        return True


# --- the node under test ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int) -> dict[str, float]:
    """Resident memory (MB), threads and open files of a process."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key == "VmRSS":
                    out["rss_mb"] = round(int(value.split()[0]) / 1024, 1)
                elif key == "Threads":
                    out["threads"] = int(value)
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return out


@contextlib.asynccontextmanager
async def own_node(folder: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    """``megabus node`` as the README runs it, in ``folder``."""
    base = folder / "base"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEGABUS_")}
    log = await asyncio.to_thread(open, folder / "node.log", "wb")
    with log:
        proc = await asyncio.create_subprocess_exec(
            MEGABUS, "node", "-name", "fuzz", "-base", str(base), "-nats-port", str(free_port()),
            "-level", "error", stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env,
        )  # fmt: skip
    try:
        for _ in range(300):
            if (base / "megabus.json").exists() or proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        if not (base / "megabus.json").exists():
            raise SystemExit(f"fuzz: the node did not start (see {folder / 'node.log'})")
        yield proc, base
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await asyncio.to_thread(kill_orphans, base)


def kill_orphans(base: Path) -> None:
    """End the node's nats-server if the node could not (it was killed): found by its
    config file, which only this run's temporary base holds."""
    conf = str(base / "nats" / "nats-server.conf").encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if conf in fh.read().split(b"\0"):
                    os.kill(int(entry), signal.SIGKILL)
        except OSError:
            continue


# --- running cases ------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.commands = 0
        self.messages = 0
        self.answered = 0
        self.errors = 0
        self.findings: list[dict[str, str]] = []
        self.unanswered = 0
        self.internal = 0
        #: The fuzzer's own vm lines that were answered with an error, and a few of the errors.
        self.vm_failed = 0
        self.vm_errors: set[str] = set()

    def finding(self, kind: str, case: str, detail: str) -> None:
        if len(self.findings) < 20:
            self.findings.append({"kind": kind, "case": case[:200], "detail": detail[:300]})


async def send(bus: Bus, subject: str, data: bytes, idle: float) -> list[Any]:
    """Publish ``data`` with a reply inbox; every reply until the last one."""
    inbox = bus.nc.new_inbox()
    sub = await bus.nc.subscribe(inbox)
    replies: list[Any] = []
    try:
        await bus.nc.publish(subject, data, reply=inbox, headers={"Mb-Schema": "fuzz"})
        while True:
            msg = await sub.next_msg(timeout=idle)
            try:
                reply = msgspec.json.decode(msg.data, type=CommandStream)
            except msgspec.DecodeError:
                replies.append(msg.data)
                return replies
            if isinstance(reply, CommandWorking):
                continue
            replies.append(reply)
            if isinstance(reply, ErrorReply) or not reply.more:
                return replies
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


def next_case(cases: Cases, tally: Tally) -> tuple[bytes, str]:
    """The payload of the next case, and how to name it in a finding."""
    if cases.replay:
        data = cases.replay.pop()
        tally.messages += 1
        return data, repr(data[:200])
    if cases.rng.random() < 0.66:
        tally.commands += 1
        line = cases.line()
        data, _ = encode(CommandRequest(line=line, client="fuzz"))
        return data, line
    tally.messages += 1
    data = cases.message()
    return data, repr(data[:200])


async def run_case(
    bus: Bus, subject: str, case: tuple[bytes, str], tally: Tally, idle: float
) -> None:
    data, label = case
    try:
        replies = await send(bus, subject, data, idle)
    except (nats.errors.TimeoutError, BusError) as err:
        tally.unanswered += 1
        tally.finding("unanswered", label, str(err) or type(err).__name__)
        return
    tally.answered += 1
    for reply in replies:
        texts = [reply.error] if isinstance(reply, ErrorReply) else []
        if isinstance(reply, CommandReply):
            texts = [r.error for r in reply.responses if r.error]
        tally.errors += bool(texts)
        if VM_NAMESPACE in label and texts:
            tally.vm_failed += 1
            tally.vm_errors.add(texts[0][:120])
        for text in texts:
            if "internal error" in text:
                tally.internal += 1
                tally.finding("internal error", label, text)


def append_trace(path: str, batch: list[tuple[bytes, str]]) -> None:
    with open(path, "a", encoding="utf-8") as trace:
        # the payload as latin-1 text: every byte survives the round trip through JSON
        trace.writelines(json.dumps(data.decode("latin-1")) + "\n" for data, _ in batch)


async def watchdog(proc: asyncio.subprocess.Process, limit_mb: float) -> str:
    """Kill the node when its memory passes ``limit_mb`` (a case ran away with it)."""
    while proc.returncode is None:
        rss = proc_status(proc.pid).get("rss_mb", 0.0)
        if rss > limit_mb:
            proc.kill()
            return f"resident memory {rss} MB > {limit_mb} MB in this batch"
        await asyncio.sleep(0.2)
    return ""


async def reset(bus: Bus, node: str, setup: tuple[str, ...] = ()) -> None:
    """Clear what cases piled up, so memory measures leaks rather than state."""
    with contextlib.suppress(BusError):
        replies = await bus.command(node, "namespace", idle_timeout=30)
        names = [row[0] for r in replies for resp in r.responses for row in resp.tabular or []]
        for name in names:
            if name == VM_NAMESPACE:
                continue
            quoted = json.dumps(name, ensure_ascii=False).replace("#", "\\#")
            await bus.command(node, f"clear namespace {quoted}", idle_timeout=30)
        for line in (
            "clear vlans", "clear vm config", "clear history", "clear namespace", "clear cc",
            "clear plumb", "clear pipe", f"namespace {VM_NAMESPACE} vm kill all",
            f"namespace {VM_NAMESPACE} vm flush",
            *setup,
        ):  # fmt: skip
            await bus.command(node, line, idle_timeout=30)


async def fuzz(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    commands.load()  # the node's command families, so its grammar is the node's
    cases = Cases(rng, dispatch.load_grammar())
    if args.replay:
        with open(args.replay, encoding="utf-8") as fh:  # noqa: ASYNC230 - before any task runs
            cases.replay = [json.loads(line).encode("latin-1") for line in fh][::-1]
        args.cases = len(cases.replay)
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="megabus-fuzz-") as tmp:
        async with own_node(Path(tmp)) as (proc, base):
            auth = base / "auth"
            info = json.loads((base / "megabus.json").read_text())
            bus = await Bus.connect(
                [info["nats_url"]],
                name="fuzz",
                credentials=read_credentials(auth / "operator.json"),
            )
            probe = await Bus.connect(
                [info["nats_url"]],
                name="fuzz-probe",
                credentials=read_credentials(auth / "node.json"),
            )
            subject = bus.subjects.node_cmd("fuzz")
            image = Path(args.images) / "minicccfs"
            setup: tuple[str, ...] = ()
            if (image / "init").is_file():
                setup = (f"namespace {VM_NAMESPACE} vm config filesystem {image}",)
                replies = await bus.command("fuzz", setup[0], idle_timeout=30)
                cases.launching = not any(r.error for rep in replies for r in rep.responses)
            warm = max(1, min(args.cases // 10, 2000))
            before: dict[str, float] = {}
            started = time.perf_counter()
            done = 0
            try:
                while done < args.cases:
                    if done and done % args.reset_every == 0:
                        await reset(bus, "fuzz", setup)
                    if done >= warm and not before:
                        await reset(bus, "fuzz", setup)
                        before = proc_status(proc.pid or 0)
                    batch = [
                        next_case(cases, tally)
                        for _ in range(min(args.concurrency, args.cases - done))
                    ]
                    if args.trace:
                        await asyncio.to_thread(append_trace, args.trace, batch)
                    watch = asyncio.create_task(watchdog(proc, args.max_rss_mb))
                    try:
                        await asyncio.gather(
                            *(run_case(bus, subject, c, tally, args.timeout) for c in batch)
                        )
                    finally:
                        watch.cancel()
                    done += len(batch)
                    if watch.done() and not watch.cancelled() and watch.result():
                        for _, label in batch:
                            tally.finding("memory blow-up (node killed)", label, watch.result())
                    if proc.returncode is not None:
                        break
                elapsed = time.perf_counter() - started
                after: dict[str, float] = {}
                running = -1
                if proc.returncode is None:  # a dead node answers nothing: no 30 s waits
                    await reset(bus, "fuzz", setup)
                    after = proc_status(proc.pid or 0)
                with contextlib.suppress(nats.errors.Error, ValueError):
                    msg = await probe.nc.request(probe.subjects.node_info("fuzz"), b"", timeout=5)
                    running = int(json.loads(msg.data)["running"])
            finally:
                await bus.close()
                await probe.close()
            alive = proc.returncode is None
    growth = round(after.get("rss_mb", 0) - before.get("rss_mb", 0), 1) if before else 0.0
    ok = (
        alive
        and tally.unanswered == 0
        and tally.internal == 0
        and running == 0
        and growth <= args.max_growth_mb
    )
    return {
        "ok": ok,
        "cases": done,
        "commands": tally.commands,
        "messages": tally.messages,
        "answered": tally.answered,
        "unanswered": tally.unanswered,
        "error_answers": tally.errors,
        "internal_errors": tally.internal,
        "unsafe_lines_skipped": cases.skipped,
        "vm_lines": cases.launches,
        "vm_lines_failed": tally.vm_failed,
        "vm_errors": sorted(tally.vm_errors)[:5],
        "netns": os.environ.get(NETNS_MARK) == "1",
        "seconds": round(elapsed, 2),
        "execs_per_s": round(done / elapsed, 1) if elapsed else 0.0,
        "node_alive": alive,
        "running_after": running,
        "rss_mb_after_warmup": before.get("rss_mb"),
        "rss_mb_end": after.get("rss_mb"),
        "rss_growth_mb": growth,
        "fds": [before.get("fds"), after.get("fds")],
        "threads": [before.get("threads"), after.get("threads")],
        "seed": args.seed,
        "findings": tally.findings,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--concurrency", type=int, default=16, help="cases in flight")
    parser.add_argument("--timeout", type=float, default=30.0, help="idle seconds per case")
    parser.add_argument("--reset-every", type=int, default=5000, help="cases between clean-ups")
    parser.add_argument(
        "--max-growth-mb", type=float, default=30.0, help="memory growth still called flat"
    )
    parser.add_argument(
        "--max-rss-mb", type=float, default=2048.0, help="the node is killed past this memory"
    )
    parser.add_argument("--trace", default="", help="append every case to this file first")
    parser.add_argument(
        "--images", default=str(REPO / "build" / "images"), help="where minicccfs is (launches)"
    )
    parser.add_argument(
        "--no-netns", action="store_true", help="run in this network namespace (not as root)"
    )
    parser.add_argument(
        "--replay", default="", help="send the cases of a --trace file again, in order"
    )
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.randrange(2**32)
    return args


def own_netns(args: argparse.Namespace) -> None:
    """As root, run again in a new network namespace with only ``lo`` (up)."""
    if args.no_netns or os.geteuid() != 0:
        return
    if os.environ.get(NETNS_MARK) == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return
    os.environ[NETNS_MARK] = "1"
    os.execvp("unshare", ["unshare", "--net", "--", sys.executable, *sys.argv])


if __name__ == "__main__":
    # the bus logs "disconnected" at close; the JSON line is the output
    logging.basicConfig(level=logging.ERROR)
    arguments = parse_args()
    own_netns(arguments)
    result = asyncio.run(fuzz(arguments))
    print(json.dumps(result))
    sys.exit(0 if result["ok"] else 1)
