"""Which requests the emulator served: an access hook that records each and lets it through.

    log = RequestLog.install(emulator)      # chained before any access control already there
    ...
    log.writes(since=mark)                  # POST/PUT/PATCH/DELETE served after ``mark``

The emulator serves from its own thread (``serve_emulator_in_thread``); an entry is appended
there (atomic for a list) and read from the test's thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp.web

from oneie_operator.testing.emulator import AccessHook, FixedKubernetesEmulator

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Served:
    method: str
    path: str
    query: str
    user_agent: str
    at: float  # time.monotonic()

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS

    @property
    def is_watch(self) -> bool:
        return self.method == "GET" and "watch=true" in self.query

    def __str__(self) -> str:
        return f"{self.method} {self.path}{'?' + self.query if self.query else ''} ({self.user_agent.split('/')[0]})"


class RequestLog:
    """An :class:`~oneie_operator.testing.emulator.AccessHook` that records every request."""

    def __init__(self, then: AccessHook | None = None) -> None:
        self.entries: list[Served] = []
        self._then = then

    @classmethod
    def install(cls, emulator: FixedKubernetesEmulator) -> RequestLog:
        log = cls(emulator.access)
        emulator.access = log
        return log

    async def __call__(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse | None:
        self.entries.append(
            Served(request.method, request.path, request.query_string, request.headers.get("User-Agent", ""),
                   time.monotonic())
        )
        return await self._then(request) if self._then is not None else None

    def mark(self) -> int:
        """A position in the log (for ``since``)."""
        return len(self.entries)

    def writes(self, since: int = 0) -> list[Served]:
        return [entry for entry in self.entries[since:] if entry.is_write]

    def reads(self, since: int = 0) -> list[Served]:
        return [entry for entry in self.entries[since:] if entry.method == "GET" and not entry.is_watch]
