"""The demo's dashboard: ``kubectl oneie dashboard`` started as a child process with the demo's
kubeconfig (its default context, the cluster admin), so its URL can be printed with the rest.

A child process and not an import: the demo sits below the CLI in the package's layers.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

STARTUP_SECONDS = 30.0


@contextlib.asynccontextmanager
async def dashboard(kubeconfig: Path, port: int = 0) -> AsyncIterator[str | None]:
    """The dashboard's URL (with its token) while it runs; ``None`` when it did not start.

    The child inherits the working directory, so a relative ``kubeconfig`` works.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oneie_operator.cli.kubectl_plugin", "dashboard",
        "--kubeconfig", str(kubeconfig), "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL,
    )
    url: str | None = None
    try:
        assert process.stdout is not None
        with contextlib.suppress(TimeoutError):
            line = await asyncio.wait_for(process.stdout.readline(), STARTUP_SECONDS)
            text = line.decode(errors="replace").strip()
            url = text.split("open ", 1)[1] if "open http" in text else None
        yield url
    finally:
        if process.returncode is None:
            # Killed, not asked to stop: it keeps no state, and its graceful shutdown (aiohttp's, then
            # the interpreter's) took ~0.4 s of the demo's Ctrl-C.
            process.kill()
            await process.wait()
