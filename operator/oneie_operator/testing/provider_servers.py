"""Local HTTP servers that behave like each built-in provider's documented API.

For the tests and the demo (``oneie-operator demo`` ships them, hence the package). Each server is
an aiohttp application on 127.0.0.1 that accepts one configured credential, rejects every other
one with the provider's real error document, and can be switched at run time into a fault mode::

    async with ProviderServers() as servers:          # random ports, generated credentials
        convex = servers["convex"]
        convex.base_url                               # http://127.0.0.1:PORT
        servers.settings("convex")                    # {"url": "http://127.0.0.1:PORT"}
        servers.credentials["convex"]                 # {"deployKey": "dev:happy-otter-123|..."}
        convex.fault = "hang"                         # or "slow:2", "500", "429:7", "reset", ...
        convex.request_count                          # requests seen (admin calls excluded)

Fault modes (per server; ``"ok"`` is normal behaviour):

=================  ==========================================================================
``ok``             behave like the provider
``hang``           accept the request and never answer (until the server stops)
``slow:<s>``       answer normally after ``s`` seconds
``500``            HTTP 500 with the provider's error document
``5xx[:<s>]``      any other 5xx the same way (e.g. Notion's ``529`` overload), optional ``Retry-After``
``429``            HTTP 429 with the provider's rate-limit document, no ``Retry-After``
``429:<s>``        the same with ``Retry-After: <s>``
``reset``          reset the TCP connection (RST) without answering
``notjson``        HTTP 200 with an HTML page where JSON is expected
``huge``           HTTP 200 with a 5 MiB JSON body, streamed (no Content-Length)
=================  ==========================================================================

Another process (the demo's operator, a shell) can switch faults over HTTP:
``PUT /__fault__`` with the mode as the body; ``GET /__fault__`` and ``GET /__requests__`` report.

What each fake implements is the part the providers use, as documented (see the provider modules):
Convex ``GET /version``, ``GET /api/v1/deployment_info``, ``GET /api/check_admin_key``
(``Authorization: Convex <key>``); WordPress the REST index and ``wp/v2/users/me`` under
``/wp-json`` and ``?rest_route=`` with application-password Basic auth; Notion ``GET /v1/users/me``
(``Notion-Version`` required); Supabase ``GET /rest/v1/`` (privileged keys only) and
``GET /auth/v1/health`` with ``apikey`` (new ``sb_`` keys must not come as ``Bearer``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import secrets
import socket
import string
import struct
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar

from aiohttp import web

__all__ = [
    "FAULT_MODES",
    "PROVIDERS",
    "ProviderServer",
    "ProviderServers",
    "RecordedRequest",
    "default_credentials",
    "fake_jwt",
]

PROVIDERS = ("convex", "wordpress", "notion", "supabase")
FAULT_MODES = (
    "ok",
    "hang",
    "slow:<seconds>",
    "500",
    "5xx[:<retry_after>]",
    "429",
    "429:<retry_after>",
    "reset",
    "notjson",
    "huge",
)
_FAULT = re.compile(r"^(ok|hang|reset|notjson|huge|(429|5\d\d)(:\d+(\.\d+)?)?|slow:\d+(\.\d+)?)$")
HUGE_BYTES = 5 * 1024 * 1024


def _token(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def fake_jwt(role: str, ref: str = "abcdefghijklmnopqrst") -> str:
    """A JWT-shaped legacy Supabase key with the given ``role`` claim (signature is random)."""

    def part(obj: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    header = part({"alg": "HS256", "typ": "JWT"})
    payload = part({"iss": "supabase", "ref": ref, "role": role, "iat": 1700000000, "exp": 2000000000})
    signature = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    return f"{header}.{payload}.{signature}"


def default_credentials() -> dict[str, dict[str, str]]:
    """Fresh, well-formed credentials for every fake provider."""
    alnum = string.ascii_letters + string.digits
    app_password = _token(alnum, 24)
    return {
        "convex": {"deployKey": f"dev:happy-otter-123|{secrets.token_urlsafe(48)}"},
        "wordpress": {
            "username": "admin",
            "applicationPassword": " ".join(app_password[i : i + 4] for i in range(0, 24, 4)),
        },
        "notion": {"token": "ntn_" + _token(alnum, 46)},
        "supabase": {
            "serviceRoleKey": "sb_secret_" + _token(alnum + "_-", 32),
            "anonKey": "sb_publishable_" + _token(alnum + "_-", 32),
        },
    }


@dataclass(frozen=True)
class RecordedRequest:
    """One request a fake server received (no headers: they carry credentials)."""

    method: str
    path: str
    query: str
    at: float


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=dict(headers or {}))


class ProviderServer:
    """One fake provider on 127.0.0.1. Subclasses implement the provider's routes."""

    name = "provider"

    def __init__(self, credentials: Mapping[str, str], *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.credentials = dict(credentials)
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self._fault = "ok"
        #: When set, the fault applies only to requests whose path and query contain this text
        #: (e.g. only a provider's health route, so a credential test passes and a probe fails).
        self.fault_path: str | None = None
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._changed: asyncio.Condition | None = None

    # ------------------------------------------------------------------ public
    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError(f"the fake {self.name} server is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def fault(self) -> str:
        return self._fault

    @fault.setter
    def fault(self, mode: str) -> None:
        if not _FAULT.match(mode):
            raise ValueError(f"unknown fault mode {mode!r}; expected one of: {', '.join(FAULT_MODES)}")
        self._fault = mode

    @property
    def request_count(self) -> int:
        return len(self.requests)

    async def wait_for_requests(self, count: int, deadline: float = 5.0) -> None:
        """Wait until at least ``count`` requests arrived (``TimeoutError`` after ``deadline`` s)."""
        assert self._changed is not None, "server not started"
        async with asyncio.timeout(deadline), self._changed:
            await self._changed.wait_for(lambda: len(self.requests) >= count)

    async def start(self) -> None:
        self._closing = asyncio.Event()
        self._changed = asyncio.Condition()
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("GET", "/__fault__", self._get_fault)
        app.router.add_route("PUT", "/__fault__", self._put_fault)
        app.router.add_route("POST", "/__fault__", self._put_fault)
        app.router.add_route("GET", "/__requests__", self._get_requests)
        self.add_routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, shutdown_timeout=0.5)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])

    def close_keepalive_connections(self) -> None:
        """Close the clients' idle keep-alive connections (a request being served finishes first).

        Kopf run in-process waits up to 5 s on exit for every task created while it ran: the
        handler task of each keep-alive connection its HTTP client left open to this server too."""
        server = self._runner.server if self._runner is not None else None
        for connection in list(getattr(server, "connections", None) or ()):
            connection.close()

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()  # releases "hang" and "slow" handlers
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ provider specifics
    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def error_document(self, status: int, code: str, message: str) -> Any:
        return {"code": code, "message": message}

    def rate_limited(self, retry_after: str | None) -> web.Response:
        headers = {"Retry-After": retry_after} if retry_after else {}
        return _json(429, self.error_document(429, "rate_limited", "Too many requests"), headers)

    def server_error(self, status: int = 500) -> web.Response:
        return _json(status, self.error_document(status, "internal_server_error", "Internal server error"))

    # ------------------------------------------------------------------ machinery
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/__"):
            response: web.StreamResponse = await handler(request)
            return response
        self.requests.append(RecordedRequest(request.method, request.path, request.query_string, time.time()))
        assert self._changed is not None and self._closing is not None
        async with self._changed:
            self._changed.notify_all()
        mode = self._fault if self.fault_path is None or self.fault_path in request.path_qs else "ok"
        if mode == "hang":
            await self._closing.wait()
            return web.Response(status=503, text="server stopping")
        if mode.startswith("slow:"):
            try:
                await asyncio.wait_for(self._closing.wait(), float(mode.split(":", 1)[1]))
            except TimeoutError:
                pass
        elif mode.startswith("429"):
            return self.rate_limited(mode.split(":", 1)[1] if ":" in mode else None)
        elif mode[0] == "5":
            status, _, retry_after = mode.partition(":")
            response = self.server_error(int(status))
            if retry_after:
                response.headers["Retry-After"] = retry_after
            return response
        elif mode == "reset":
            return self._reset(request)
        elif mode == "notjson":
            return web.Response(
                status=200,
                text="<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>",
                content_type="text/html",
            )
        elif mode == "huge":
            return await self._huge(request)
        response = await handler(request)
        return response

    @staticmethod
    def _reset(request: web.Request) -> web.Response:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return web.Response(status=500)  # never delivered: the connection is gone

    @staticmethod
    async def _huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            await response.write(b'{"padding": "')
            for _ in range(HUGE_BYTES // len(chunk)):
                await response.write(chunk)
            await response.write(b'"}')
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client stopped reading, as it should
        return response

    async def _get_fault(self, request: web.Request) -> web.Response:
        return web.Response(text=self._fault)

    async def _put_fault(self, request: web.Request) -> web.Response:
        mode = (await request.text()).strip()
        try:
            self.fault = mode
        except ValueError as exc:
            return web.Response(status=400, text=str(exc))
        return web.Response(text=self._fault)

    async def _get_requests(self, request: web.Request) -> web.Response:
        return web.json_response({"count": self.request_count})


# ---------------------------------------------------------------------------------------- Convex
class ConvexServer(ProviderServer):
    """Convex deployment: the health routes (``/``, ``/instance_name``, ``/instance_version``) and
    ``/api/check_admin_key``, as ``crates/local_backend/src/router.rs`` and ``dashboard.rs`` serve them.

    ``instance_name`` defaults to the deployment the deploy key names; ``read_only = True`` makes
    the key a read-only one (``isReadOnly`` and the read-only ``allowedOps``).
    """

    name = "convex"
    read_only = False
    #: ``keybroker::read_only_operations()``.
    READ_ONLY_OPS: ClassVar[list[str]] = [
        "ViewEnvironmentVariables", "ViewLogs", "ViewMetrics", "ViewIntegrations", "ViewData", "ViewBackups",
        "DownloadBackups", "RunInternalQueries", "RunTestQuery", "ViewAuditLog", "ViewUsageLimits", "ViewUsage",
    ]  # fmt: skip

    def __init__(self, credentials: Mapping[str, str], *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(credentials, host=host, port=port)
        key = self.credentials.get("deployKey", "")
        prefix = key.split("|", 1)[0]
        self.instance_name = prefix.split(":", 1)[1] if ":" in prefix else prefix or "convex-self-hosted"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._root)
        app.router.add_get("/instance_name", self._instance_name)
        app.router.add_get("/instance_version", self._instance_version)
        app.router.add_get("/api/check_admin_key", self._check_admin_key)

    def _denied(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        if not header or scheme.lower() != "convex":  # no admin identity: keybroker::bad_admin_key_error
            return _json(
                403,
                {
                    "code": "BadDeployKey",
                    "message": f"The provided deploy key was invalid for deployment '{self.instance_name}'. Double "
                    "check that the environment this key was generated for matches the desired deployment.",
                },
            )
        if key != self.credentials["deployKey"]:  # a key that does not decrypt for this deployment
            return _json(
                401, {"code": "BadAdminKey", "message": "The provided admin key was invalid for this instance"}
            )
        return None

    async def _root(self, request: web.Request) -> web.Response:
        return web.Response(text="This Convex deployment is running. See https://docs.convex.dev/.")

    async def _instance_name(self, request: web.Request) -> web.Response:
        return web.Response(text=self.instance_name)

    async def _instance_version(self, request: web.Request) -> web.Response:
        return web.Response(text="1.29.0-fake")

    async def _check_admin_key(self, request: web.Request) -> web.Response:
        denied = self._denied(request)
        if denied is not None:
            return denied
        ops = self.READ_ONLY_OPS if self.read_only else []
        return _json(200, {"success": True, "allowedOps": ops, "isReadOnly": self.read_only})


# ------------------------------------------------------------------------------------- WordPress
class WordPressServer(ProviderServer):
    """WordPress core REST API: the index and ``wp/v2/users/me``, at ``/wp-json`` and ``?rest_route=``."""

    name = "wordpress"

    def error_document(self, status: int, code: str, message: str) -> Any:
        return {"code": code, "message": message, "data": {"status": status}}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._dispatch)

    @staticmethod
    def _fields(document: Mapping[str, Any], request: web.Request) -> dict[str, Any]:
        wanted = request.query.get("_fields")
        if not wanted:
            return dict(document)
        keys = {k.strip().split(".")[0] for k in wanted.split(",")}
        return {k: v for k, v in document.items() if k in keys}

    async def _dispatch(self, request: web.Request) -> web.Response:
        path = request.path
        if path == "/wp-json" or path.startswith("/wp-json/"):
            route = path[len("/wp-json") :] or "/"
        elif "rest_route" in request.query and path in ("/", "/index.php"):
            route = request.query["rest_route"] or "/"
        else:
            return web.Response(status=404, text="<html><body>Not Found</body></html>", content_type="text/html")
        route = "/" + route.strip("/") if route.strip("/") else "/"
        if request.method != "GET":
            return self._error(404, "rest_no_route", "No route was found matching the URL and request method.")
        if route == "/":
            return _json(200, self._fields(self._index(request), request))
        if route == "/wp/v2/users/me":
            return self._users_me(request)
        return self._error(404, "rest_no_route", "No route was found matching the URL and request method.")

    def _error(self, status: int, code: str, message: str) -> web.Response:
        return _json(status, self.error_document(status, code, message))

    def _index(self, request: web.Request) -> dict[str, Any]:
        base = f"http://{request.host}"
        return {
            "name": "oneie fake WordPress",
            "description": "Just another WordPress site",
            "url": base,
            "home": base,
            "gmt_offset": 0,
            "namespaces": ["oembed/1.0", "wp/v2", "wp-site-health/v1", "wp-block-editor/v1"],
            "authentication": {
                "application-passwords": {"endpoints": {"authorization": f"{base}/wp-admin/authorize-application.php"}}
            },
            "routes": {"/": {"namespace": "", "methods": ["GET"]}},
        }

    def _users_me(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return self._error(401, "rest_not_logged_in", "You are not currently logged in.")
        try:
            username, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return self._error(401, "rest_not_logged_in", "You are not currently logged in.")
        if username != self.credentials["username"]:
            return self._error(401, "invalid_username", "Unknown username. Check again or try your email address.")
        expected = re.sub(r"[^A-Za-z0-9]", "", self.credentials["applicationPassword"])
        if re.sub(r"[^A-Za-z0-9]", "", password) != expected:
            return self._error(401, "incorrect_password", "The provided password is an invalid application password.")
        user = {
            "id": 1,
            "username": username,
            "name": username,
            "email": "admin@example.org",
            "roles": ["administrator"],
            "slug": username,
        }
        if request.query.get("context") != "edit":
            user = {k: v for k, v in user.items() if k in ("id", "name", "slug")}
        return _json(200, self._fields(user, request))


# ---------------------------------------------------------------------------------------- Notion
class NotionServer(ProviderServer):
    """Notion API: ``GET /v1/users/me`` with ``Authorization: Bearer`` and ``Notion-Version``."""

    name = "notion"

    def error_document(self, status: int, code: str, message: str) -> Any:
        return {
            "object": "error",
            "status": status,
            "code": code,
            "message": message,
            "request_id": str(uuid.uuid4()),
        }

    def rate_limited(self, retry_after: str | None) -> web.Response:
        body = self.error_document(
            429, "rate_limited", "You have been rate limited. Please try again in a few minutes."
        )
        body["additional_data"] = {"rate_limit_reason": "connection_limit"}
        return _json(429, body, {"Retry-After": retry_after} if retry_after else {})

    def server_error(self, status: int = 500) -> web.Response:
        if status == 529:
            return _json(529, self.error_document(529, "service_overload", "Notion is overloaded."))
        return _json(status, self.error_document(status, "internal_server_error", "Unexpected error occurred."))

    #: Databases shared with the integration: dashed ID → data source names.
    shared_databases: ClassVar[dict[str, list[str]]] = {
        "1429989f-e8ac-4eff-bc8f-57f56486db54": ["Tasks", "Archive"],
    }

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/users/me", self._me)
        app.router.add_get("/v1/databases/{database_id}", self._database)

    def _refused(self, request: web.Request) -> web.Response | None:
        if "Notion-Version" not in request.headers:
            return _json(
                400,
                self.error_document(
                    400,
                    "missing_version",
                    "Notion-Version header failed validation: Notion-Version header should be defined, "
                    "instead was `undefined`.",
                ),
            )
        if request.headers.get("Authorization") != f"Bearer {self.credentials['token']}":
            return _json(401, self.error_document(401, "unauthorized", "API token is invalid."))
        return None

    async def _database(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        raw = request.match_info["database_id"].replace("-", "").lower()
        dashed = f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
        sources = self.shared_databases.get(dashed)
        if sources is None:
            return _json(
                404,
                self.error_document(
                    404,
                    "object_not_found",
                    f"Could not find database with ID: {dashed}. Make sure the relevant pages and "
                    "databases are shared with your integration.",
                ),
            )
        database: dict[str, Any] = {"object": "database", "id": dashed, "title": [], "is_inline": False}
        if request.headers["Notion-Version"] >= "2025-09-03":
            database["data_sources"] = [
                {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, dashed + name)), "name": name} for name in sources
            ]
        else:
            database["properties"] = {"Name": {"id": "title", "type": "title", "title": {}}}
        return _json(200, database)

    async def _me(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        return _json(
            200,
            {
                "object": "user",
                "id": "16d84278-ab0e-484c-9bdd-b35da3bd8905",
                "name": "oneie test connection",
                "avatar_url": None,
                "type": "bot",
                "bot": {
                    "owner": {"type": "workspace", "workspace": True},
                    "workspace_name": "oneie fake workspace",
                },
                "request_id": str(uuid.uuid4()),
            },
        )


# -------------------------------------------------------------------------------------- Supabase
class SupabaseServer(ProviderServer):
    """Supabase gateway: ``GET /rest/v1/`` (privileged keys) and ``GET /auth/v1/health``."""

    name = "supabase"

    def error_document(self, status: int, code: str, message: str) -> Any:
        return {"code": status, "error_code": code, "msg": message}

    def rate_limited(self, retry_after: str | None) -> web.Response:
        body = self.error_document(429, "over_request_rate_limit", "Request rate limit reached")
        return _json(429, body, {"Retry-After": retry_after} if retry_after else {})

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/rest/v1/", self._rest_root)
        app.router.add_get("/auth/v1/health", self._auth_health)

    def _role(self, request: web.Request) -> str | web.Response:
        key = request.headers.get("apikey") or request.query.get("apikey")
        if not key:
            return _json(
                401,
                {
                    "message": "No API key found in request",
                    "hint": "No `apikey` request header or url param was found.",
                },
            )
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer sb_"):
            # The new keys are not JWTs; the Data API cannot take them as a bearer token.
            return _json(
                401,
                {
                    "code": "PGRST301",
                    "details": None,
                    "hint": None,
                    "message": "Expected 3 parts in JWT; got 1",
                },
            )
        if key == self.credentials.get("serviceRoleKey"):
            return "service_role"
        if key == self.credentials.get("anonKey"):
            return "anon"
        return _json(
            401,
            {
                "message": "Invalid API key",
                "hint": "Double check your Supabase `anon` or `service_role` API key.",
            },
        )

    async def _rest_root(self, request: web.Request) -> web.Response:
        role = self._role(request)
        if isinstance(role, web.Response):
            return role
        if role != "service_role":
            return _json(
                403,
                {"message": "Access to the schema is forbidden", "hint": "Use a secret or service_role key"},
            )
        return _json(
            200,
            {
                "swagger": "2.0",
                "info": {"title": "standard public schema", "version": "12.2.0"},
                "paths": {"/": {}},
            },
        )

    async def _auth_health(self, request: web.Request) -> web.Response:
        role = self._role(request)
        if isinstance(role, web.Response):
            return role
        return _json(
            200,
            {
                "version": "v2.170.0",
                "name": "GoTrue",
                "description": "GoTrue is a user registration and authentication API",
            },
        )


_SERVERS: dict[str, type[ProviderServer]] = {
    "convex": ConvexServer,
    "wordpress": WordPressServer,
    "notion": NotionServer,
    "supabase": SupabaseServer,
}


class ProviderServers:
    """Start fake servers for several providers; ``servers[name]`` is one :class:`ProviderServer`."""

    def __init__(
        self,
        credentials: Mapping[str, Mapping[str, str]] | None = None,
        *,
        providers: Sequence[str] = PROVIDERS,
        host: str = "127.0.0.1",
        ports: Mapping[str, int] | None = None,
    ) -> None:
        unknown = [p for p in providers if p not in _SERVERS]
        if unknown:
            raise ValueError(f"no fake server for {', '.join(unknown)}; available: {', '.join(_SERVERS)}")
        generated = default_credentials()
        self.credentials: dict[str, dict[str, str]] = {
            name: dict((credentials or {}).get(name) or generated[name]) for name in providers
        }
        self._servers = {
            name: _SERVERS[name](self.credentials[name], host=host, port=(ports or {}).get(name, 0))
            for name in providers
        }

    def __getitem__(self, name: str) -> ProviderServer:
        return self._servers[name]

    def __iter__(self) -> Any:
        return iter(self._servers.values())

    def settings(self, name: str) -> dict[str, Any]:
        """The ``spec.<name>`` block that points the provider at its fake server."""
        base = self._servers[name].base_url
        if name == "notion":
            return {"apiUrl": base}
        return {"url": base}

    def set_fault(self, mode: str) -> None:
        """Put every server into fault ``mode``."""
        for server in self._servers.values():
            server.fault = mode

    async def start(self) -> None:
        started: list[ProviderServer] = []
        try:
            for server in self._servers.values():
                await server.start()
                started.append(server)
        except BaseException:
            for server in started:
                await server.stop()
            raise

    def close_keepalive_connections(self) -> None:
        for server in self._servers.values():
            server.close_keepalive_connections()

    async def stop(self) -> None:
        await asyncio.gather(*(server.stop() for server in self._servers.values()))

    async def __aenter__(self) -> ProviderServers:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
