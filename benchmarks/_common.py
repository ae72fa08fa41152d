"""Helpers shared by the benchmarks that run the operator and the Kubernetes emulator in child processes.

Used by ``reconcile.py``, ``switch.py`` (through ``_switch_support.py``) and the emulator
processes (``_emulator_process.py``, ``_switch_support.py`` run as a script): child-process
management (``PR_SET_PDEATHSIG``, stop with TERM then KILL, CPU and RSS from ``/proc``), the
whole machine's busy CPU, starting an emulator script and reading its ``READY <url>`` line,
serving an emulator until SIGTERM/SIGINT or end-of-file on stdin, and provider credentials in
each provider's real format. Nothing here measures anything by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import random
import signal
import string
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Every benchmark imports this module first: from a checkout without the package installed, the
# package's own folder makes ``import oneie_operator`` work for the imports that follow it.
try:
    import oneie_operator  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
JsonDict = dict[str, Any]


class BenchmarkError(Exception):
    """The benchmark could not measure (a child failed, a deadline passed): a message, not a figure."""


# --- Child processes -------------------------------------------------------------------------------

_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child only makes the system call


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the benchmark dies, however it dies."""
    _LIBC.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process (all its threads), from /proc."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_mb(self) -> float:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "    (no log)"
        return "\n".join(f"    | {line[:300]}" for line in text[-lines:])

    def check_alive(self, during: str) -> None:
        if self.process.returncode is not None:
            raise BenchmarkError(f"the {self.name} exited ({self.process.returncode}) during {during}:\n{self.tail()}")

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        process = self.process
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


@contextlib.asynccontextmanager
async def emulator_child(script: Path, name: str, log_path: Path) -> AsyncIterator[tuple[Child, str]]:
    """``python SCRIPT --port 0`` (an emulator process); yields it and the URL of its ``READY`` line."""
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(script), "--port", "0",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
            preexec_fn=die_with_parent, cwd=ROOT,
        )  # fmt: skip
    child = Child(name, process, log_path)
    try:
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
        except TimeoutError:
            line = b""
        if not line.startswith(b"READY "):
            raise BenchmarkError(f"the emulator did not start (output {line!r}):\n{child.tail()}")
        yield child, line.decode().split()[1]
    finally:
        await child.stop(timeout=10)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, all processes), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    except (OSError, IndexError, ValueError):
        return 0.0
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


# --- The emulator process side ---------------------------------------------------------------------


async def serve_until_stopped(emulator: Any, port: int, on_start: Callable[[], None] | None = None) -> None:
    """Serve ``emulator`` with the CRDs of ``crds/``, print ``READY <url>``, stop on SIGTERM/SIGINT or stdin EOF.

    The caller has made ``oneie_operator`` importable (installed, or ``operator/`` on ``sys.path``).
    """
    from oneie_operator.testing.cluster import serve_emulator

    if on_start is not None:
        on_start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def stdin_closed() -> None:
        sys.stdin.buffer.read()  # returns at end-of-file: the parent is gone or wants us to stop
        loop.call_soon_threadsafe(stop.set)

    crds = sorted((ROOT / "crds").glob("*.yaml"))
    async with serve_emulator(crds, port=port, emulator=emulator) as (_, url):
        print(f"READY {url}", flush=True)
        threading.Thread(target=stdin_closed, name="stdin-watch", daemon=True).start()
        await stop.wait()


# --- Objects -----------------------------------------------------------------------------------------


def make_credentials(rng: random.Random) -> dict[str, dict[str, str]]:
    """Credentials in each provider's real format (as ``default_credentials``), fixed by the seed."""
    alnum = string.ascii_letters + string.digits

    def token(alphabet: str, length: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(length))

    password = token(alnum, 24)
    return {
        "convex": {"deployKey": "dev:happy-otter-123|" + token(alnum + "-_", 64)},
        "wordpress": {
            "username": "admin",
            "applicationPassword": " ".join(password[i : i + 4] for i in range(0, 24, 4)),
        },
        "notion": {"token": "ntn_" + token(alnum, 46)},
        "supabase": {
            "serviceRoleKey": "sb_secret_" + token(alnum + "_-", 32),
            "anonKey": "sb_publishable_" + token(alnum + "_-", 32),
        },
    }
