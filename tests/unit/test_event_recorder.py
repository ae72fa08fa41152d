"""Events (kube/events.py): the same core/v1 Event Kopf posts; the handlers' queue of them."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import kubernetes
import pytest
from aiohttp import web

from oneie_operator.kube.events import MAX_MESSAGE_LENGTH, EventQueue, EventRecorder, EventSource, shortened
from oneie_operator.kube.rest import KubeREST


def test_a_long_message_is_cut_in_the_middle_to_the_limit() -> None:
    message = "a" * 600 + "b" * 600
    cut = shortened(message)
    assert len(cut) == MAX_MESSAGE_LENGTH
    assert cut.startswith("a" * 500) and cut.endswith("b" * 500) and "..." in cut


def test_a_short_message_is_kept() -> None:
    assert shortened("BackendOffline") == "BackendOffline"
    assert shortened("x" * MAX_MESSAGE_LENGTH) == "x" * MAX_MESSAGE_LENGTH


# --- EventQueue: handlers' Events posted in the background, against a real HTTP server ----------

SECRET_MESSAGE = "switched with s3cret-in-a-message"


class EventsApi:
    """Stands for the API server's events endpoint; answers ``answers`` in turn, then 201."""

    def __init__(self) -> None:
        self.posted: list[dict[str, Any]] = []
        self.answers: list[int] = []
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        await asyncio.sleep(self.delay)
        status = self.answers.pop(0) if self.answers else 201
        if status == 201:
            self.posted.append(body)
        return web.json_response({"kind": "Status", "reason": "x"} if status != 201 else body, status=status)


@pytest.fixture
async def events_api() -> AsyncIterator[tuple[EventsApi, EventRecorder]]:
    api = EventsApi()
    app = web.Application()
    app.router.add_post("/api/v1/namespaces/{ns}/events", api.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    cfg = kubernetes.client.Configuration()
    cfg.host = f"http://127.0.0.1:{runner.addresses[0][1]}"
    rest = KubeREST(cfg, timeout=5)
    try:
        yield api, EventRecorder(rest, EventSource("oneie-operator", "pod-1", "oneie-event-"))
    finally:
        await rest.aclose()
        await runner.cleanup()


async def _drained(queue: EventQueue) -> None:
    """Every Event posted or given up (the workers' own pace, back-offs included), then closed."""
    deadline = asyncio.get_running_loop().time() + 10
    while queue.pending and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110  (a polled deadline)
        await asyncio.sleep(0.01)
    assert queue.pending == 0, "Events still waiting after 10 s"
    await queue.aclose()


def _involved(name: str) -> dict[str, str]:
    return {"apiVersion": "one.ie/v1alpha1", "kind": "Organization", "namespace": "t", "name": name, "uid": "u"}


async def test_events_are_posted_in_order_per_object_without_the_handler_waiting(
    events_api: tuple[EventsApi, EventRecorder],
) -> None:
    api, recorder = events_api
    api.delay = 0.05
    queue = EventQueue(recorder, workers=2)
    for number in range(5):
        for org in ("a", "b", "c"):
            queue.post(_involved(org), "Normal", f"Step{number}", f"{org} step {number}")
    assert queue.pending == 15 and api.posted == [], "post() returned before any Event reached the API server"
    await _drained(queue)
    assert queue.pending == 0 and len(api.posted) == 15
    for org in ("a", "b", "c"):
        reasons = [e["reason"] for e in api.posted if e["involvedObject"]["name"] == org]
        assert reasons == [f"Step{n}" for n in range(5)], reasons
    event = api.posted[0]
    assert event["reportingComponent"] == "oneie-operator" and event["metadata"]["generateName"] == "oneie-event-"


async def test_an_event_the_api_server_could_not_take_is_tried_again_a_refused_one_dropped(
    events_api: tuple[EventsApi, EventRecorder], caplog: pytest.LogCaptureFixture
) -> None:
    api, recorder = events_api
    queue = EventQueue(recorder, workers=1, backoffs=(0.05, 0.05))
    api.answers = [503, 429]  # the first Event: taken at the third attempt
    queue.post(_involved("a"), "Normal", "Switched", SECRET_MESSAGE)
    await _drained(queue)
    assert [e["reason"] for e in api.posted] == ["Switched"]

    queue = EventQueue(recorder, workers=1, backoffs=(0.05,))
    api.answers = [403, 503, 503]  # refused: dropped at once; then unavailable beyond the back-offs
    with caplog.at_level(logging.WARNING):
        queue.post(_involved("a"), "Warning", "Refused", SECRET_MESSAGE)
        queue.post(_involved("a"), "Warning", "Unavailable", SECRET_MESSAGE)
        queue.post(_involved("a"), "Normal", "Later", SECRET_MESSAGE)
        await _drained(queue)
    assert [e["reason"] for e in api.posted] == ["Switched", "Later"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("Refused" in w and "403" in w for w in warnings), warnings
    assert any("Unavailable" in w and "503" in w for w in warnings), warnings
    assert not any("s3cret" in w for w in warnings), "an Event's message reached the log"


async def test_beyond_the_bound_events_are_dropped_not_kept(
    events_api: tuple[EventsApi, EventRecorder], caplog: pytest.LogCaptureFixture
) -> None:
    api, recorder = events_api
    api.delay = 0.2
    queue = EventQueue(recorder, workers=1, max_pending=3)
    with caplog.at_level(logging.WARNING):
        for number in range(5):
            queue.post(_involved("a"), "Normal", f"E{number}", "m")
    assert queue.dropped == 2 and queue.pending == 3
    assert sum("dropped" in r.getMessage() for r in caplog.records) == 2
    await _drained(queue)
    assert [e["reason"] for e in api.posted] == ["E0", "E1", "E2"]


async def test_closing_posts_what_waits_once_without_back_off(events_api: tuple[EventsApi, EventRecorder]) -> None:
    api, recorder = events_api
    queue = EventQueue(recorder, workers=1, backoffs=(30.0,))
    api.answers = [503]
    queue.post(_involved("a"), "Normal", "Unavailable", "m")
    queue.post(_involved("a"), "Normal", "Taken", "m")
    started = asyncio.get_running_loop().time()
    await queue.aclose(timeout=5)
    assert asyncio.get_running_loop().time() - started < 3, "closing waited for a back-off"
    assert [e["reason"] for e in api.posted] == ["Taken"] and queue.pending == 0
    queue.post(_involved("a"), "Normal", "WhileStopped", "m")  # dropped: no task may be left running
    assert queue.pending == 0 and queue.dropped == 1
    queue.open()  # the operator started again in this loop
    queue.post(_involved("a"), "Normal", "AfterRestart", "m")
    await _drained(queue)
    assert [e["reason"] for e in api.posted] == ["Taken", "AfterRestart"]
