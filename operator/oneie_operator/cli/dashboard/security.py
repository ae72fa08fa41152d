"""The dashboard's defences: who may use it, from where, and what the browser may run.

* A per-run random token, in the URL printed at start (as Jupyter does): the first request with
  ``?token=`` gets an HttpOnly ``SameSite=Strict`` cookie and is redirected to the same URL
  without the token; every request without the token or the cookie is refused (403). Another
  local user's browser tab, which cannot read the terminal, cannot drive the dashboard.
* The ``Host`` header must name the address the dashboard listens on (DNS-rebinding defence).
* Every state-changing request (POST, DELETE) needs the per-run CSRF token in the header
  ``X-CSRF-Token`` (the page reads it from ``/api/session``, which another origin cannot read) and,
  when the browser sends one, an ``Origin`` equal to the dashboard's own.
* Every response carries a strict Content-Security-Policy (scripts and styles from the dashboard
  only, no inline code, no framing), ``nosniff``, ``no-referrer`` and ``no-store``.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

COOKIE = "oneie_dashboard"
CSRF_HEADER = "X-CSRF-Token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_bind_address(address: str, allow_remote: bool) -> None:
    """Refuse a non-loopback address unless the user asked for it explicitly."""
    if not is_loopback(address) and not allow_remote:
        raise ValueError(
            f"--address {address} is not a loopback address: the dashboard acts with your Kubernetes identity, "
            "so it listens on 127.0.0.1 unless you also pass --allow-remote"
        )


@dataclass
class Guard:
    """The per-run secrets and the hosts the dashboard answers to."""

    hosts: set[str] = field(default_factory=set)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def allow_host(self, address: str, port: int) -> None:
        names = {address, "localhost", "127.0.0.1"} if is_loopback(address) else {address}
        self.hosts |= {f"{n}:{port}" for n in names} | {f"[{address}]:{port}"}

    def has_token(self, request: web.Request) -> bool:
        given = request.cookies.get(COOKIE, "")
        return bool(given) and hmac.compare_digest(given, self.token)

    def csrf_ok(self, request: web.Request) -> bool:
        given = request.headers.get(CSRF_HEADER, "")
        if not given or not hmac.compare_digest(given, self.csrf):
            return False
        origin = request.headers.get("Origin")
        return origin is None or origin in {f"http://{h}" for h in self.hosts}


def _refuse(text: str) -> web.Response:
    return web.json_response({"refused": True, "message": text}, status=403)


def guard_middleware(guard: Guard) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await _guarded(guard, request, handler)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return middleware


async def _guarded(guard: Guard, request: web.Request, handler: Handler) -> web.StreamResponse:
    if guard.hosts and request.host not in guard.hosts:
        return _refuse(f"This dashboard does not answer to the host {request.host!r}.")
    given = request.query.get("token")
    if given is not None:
        if not hmac.compare_digest(given, guard.token):
            return _refuse("The token in this URL is not this dashboard's: open the URL it printed.")
        query = {k: v for k, v in request.query.items() if k != "token"}
        response = web.HTTPFound(request.rel_url.with_query(query))
        response.set_cookie(COOKIE, guard.token, httponly=True, samesite="Strict", path="/")
        return response
    if not guard.has_token(request):
        return _refuse("Open the URL that `kubectl oneie dashboard` printed (it carries this run's token).")
    if request.method not in SAFE_METHODS and not guard.csrf_ok(request):
        return _refuse("This change did not come from the dashboard's own page (CSRF check failed); reload it.")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return exc
