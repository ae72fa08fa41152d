"""CPU per request of the operator's REST client (``kube.rest`` over ``kube.wire``) against ``aiohttp``'s client.

    python benchmarks/kube_client.py [--requests 3000] [--concurrency 8] [--rounds 3]

A local API-like server in a process of its own (an ``aiohttp`` application on 127.0.0.1 that
answers every request with a 3 KiB JSON object, as a merge patch of an Organization's status
would be answered); its CPU is charged to neither side. In this process, on uvloop as the
operator runs, ``--concurrency`` tasks send ``--requests`` merge patches in all, first through
:class:`oneie_operator.kube.rest.KubeREST` (what the operator uses: its headers, JSON encoding
and decoding, its transport :mod:`oneie_operator.kube.wire`), then, as the baseline, through one
``aiohttp.ClientSession`` doing the same work (the JSON body encoded, the answer read and
decoded: what ``KubeREST`` did before it had its own transport). The two alternate for
``--rounds`` rounds after a warm-up; CPU is this process's ``time.process_time()``.

``ratio`` = the median over rounds of KubeREST's CPU per request / aiohttp's in the same round.
The last line of output is ``key=value`` pairs; everything before it is detail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time

import aiohttp
import kubernetes
import uvloop

from oneie_operator.kube.rest import MERGE_PATCH, KubeREST

SERVER = """
import json, sys
from aiohttp import web
BODY = json.dumps({"apiVersion": "one.ie/v1", "kind": "Organization",
                   "metadata": {"name": "org", "namespace": "ns", "resourceVersion": "123"},
                   "spec": {"backend": {"connectionRef": "a"}}, "status": {"history": ["x" * 40] * 60}}).encode()
async def answer(request):
    await request.read()
    return web.Response(body=BODY, content_type="application/json")
app = web.Application()
app.router.add_route("*", "/{tail:.*}", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""
PATCH = {"status": {"activeConnection": "b", "lastSwitch": {"to": "b", "result": "Succeeded"}}}
PATH = "/apis/one.ie/v1/namespaces/ns/organizations/org/status"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_listening(port: int, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > end:
                raise SystemExit("the server did not start") from None
            await asyncio.sleep(0.05)


async def measure(send: object, requests: int, concurrency: int) -> float:
    """CPU seconds per request (microseconds returned) for ``requests`` sends by ``concurrency`` tasks."""
    assert callable(send)

    async def worker(count: int) -> None:
        for _ in range(count):
            await send()

    started = time.process_time()
    await asyncio.gather(*(worker(requests // concurrency) for _ in range(concurrency)))
    return 1e6 * (time.process_time() - started) / (requests // concurrency * concurrency)


async def main(args: argparse.Namespace, port: int) -> str:
    await wait_listening(port)
    cfg = kubernetes.client.Configuration()
    cfg.host = f"http://127.0.0.1:{port}"
    rest = KubeREST(cfg, timeout=30)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100),
                                    timeout=aiohttp.ClientTimeout(total=30))
    headers = {"Accept": "application/json", "User-Agent": "oneie-operator", "Content-Type": MERGE_PATCH}

    async def ours() -> None:
        await rest.request("PATCH", PATH, body=PATCH, content_type=MERGE_PATCH)

    async def baseline() -> None:
        data = json.dumps(PATCH, separators=(",", ":")).encode()
        async with session.request("PATCH", cfg.host + PATH, data=data, headers=headers) as response:
            json.loads(await response.read())

    try:
        for send in (ours, baseline):
            await measure(send, 400, args.concurrency)  # warm-up: connections open, code paths hot
        rounds: list[tuple[float, float]] = []
        for number in range(1, args.rounds + 1):
            mine = await measure(ours, args.requests, args.concurrency)
            theirs = await measure(baseline, args.requests, args.concurrency)
            rounds.append((mine, theirs))
            print(f"round {number}: KubeREST {mine:.1f} µs CPU per request, aiohttp {theirs:.1f} µs "
                  f"(ratio {mine / theirs:.2f})", flush=True)
    finally:
        await rest.aclose()
        await session.close()
    ours_us = statistics.median(m for m, _ in rounds)
    aiohttp_us = statistics.median(t for _, t in rounds)
    ratio = statistics.median(m / t for m, t in rounds)
    return (f"requests={args.requests} concurrency={args.concurrency} rounds={args.rounds} "
            f"kube_rest_us_per_request={ours_us:.1f} aiohttp_us_per_request={aiohttp_us:.1f} ratio={ratio:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        print(uvloop.run(main(parser.parse_args(), port)))
    finally:
        server.terminate()
        server.wait(10)
