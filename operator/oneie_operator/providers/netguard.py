"""Destination policy: where the operator may send requests with tenants' credentials (DESIGN §5).

Tenants choose the URLs of their backends, and the operator fetches them from inside the cluster, so
a URL is a way to make the operator talk to anything its pod can reach. Two checks stop that:

1. :meth:`DestinationPolicy.check_url` looks at the URL itself before anything is sent: the scheme
   (``https``; ``http`` only where the platform allows plain http), credentials embedded in the URL,
   well-known metadata host names, and literal IP addresses.
2. :class:`GuardedNetworkBackend` sits under httpx (``httpx.AsyncHTTPTransport`` → httpcore's
   ``AsyncConnectionPool(network_backend=...)``) and checks the address the operator *actually
   connects to*: it resolves the host name itself with ``loop.getaddrinfo``, refuses the host if
   **any** resolved address is forbidden (so a name cannot mix a public and a metadata address), and
   then connects to one of the checked IP addresses, never to the name again. That defeats DNS
   rebinding (the name is resolved once, by us, and the socket goes to the address we checked).
   :class:`~oneie_operator.providers.aiotransport.GuardedAiohttpTransport` does the same in an
   ``aiohttp`` resolver (``ProviderHTTP``'s default transport: several times cheaper per request).

TLS is unaffected by connecting to an IP: httpcore calls ``stream.start_tls(server_hostname=...)``
with the URL's host name (``sni_hostname`` extension or the origin host, see
``httpcore/_async/connection.py``), so SNI and certificate verification still use the host name.
``tests/providers/test_netguard.py`` proves it with a certificate issued for a name served on
127.0.0.1.

Address classes:

* always refused: link-local (169.254.0.0/16, fe80::/10), cloud metadata addresses (AWS/GCP/Azure/
  OpenStack 169.254.169.254, AWS IPv6 fd00:ec2::254, Alibaba 100.100.100.200, Azure's platform
  address 168.63.129.16) and names (``metadata.google.internal``, ``metadata.goog``), and addresses
  that are not unicast destinations (0.0.0.0/8, ``::``, multicast, 240.0.0.0/4, broadcast);
* loopback (127.0.0.0/8, ::1): only with ``allow_loopback``;
* private and other non-global ranges (RFC 1918, 100.64.0.0/10 CGNAT, fc00::/7, 198.18.0.0/15, the
  documentation ranges ...): only with ``allow_private`` or when inside ``allowed_cidrs``.

IPv6 addresses that embed an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``,
6to4 ``2002::/16``, Teredo) are judged by the embedded IPv4 address too: the stricter verdict wins.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpcore
import httpx

from oneie_operator.errors import DestinationForbiddenError, FieldIssue

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: ``async resolver(host, port) -> [ip, ...]``; the default uses ``loop.getaddrinfo``.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

Verdict = Literal["allowed", "loopback", "private", "link-local", "metadata", "not-unicast"]

#: Cloud metadata services, refused whatever the policy says.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure IMDS, OpenStack, Oracle, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure platform (WireServer)
    )
)
METADATA_HOSTNAMES: frozenset[str] = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)

_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
_NOT_UNICAST = (
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("240.0.0.0/4"),  # includes 255.255.255.255
    ipaddress.ip_network("::/128"),
    ipaddress.ip_network("ff00::/8"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

_SEVERITY: dict[Verdict, int] = {
    "allowed": 0,
    "private": 1,
    "loopback": 2,
    "not-unicast": 3,
    "link-local": 4,
    "metadata": 5,
}

_EXPLANATION: dict[Verdict, str] = {
    "allowed": "allowed",
    "loopback": "a loopback address, which this platform does not allow",
    "private": "a private or non-public address, which this platform does not allow",
    "link-local": "a link-local address, which is never allowed",
    "metadata": "a cloud metadata address, which is never allowed",
    "not-unicast": "not a unicast host address, which is never allowed",
}


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


@dataclass(frozen=True)
class DestinationPolicy:
    """Which destinations the operator may connect to. The default is the strict one."""

    allow_loopback: bool = False
    """Allow 127.0.0.0/8 and ::1 (development, the demo and tests; never on a shared cluster)."""

    allow_private: bool = False
    """Allow private and other non-global ranges (RFC 1918, 100.64.0.0/10, fc00::/7, ...).
    Turn on only when tenants' backends legitimately live on the cluster's own networks."""

    allow_plain_http: bool = False
    """Allow ``http://`` URLs; credentials then travel unencrypted. Off: only ``https://``."""

    allowed_cidrs: tuple[str, ...] = ()
    """Networks allowed even when loopback/private ranges are not, e.g. ``("10.20.0.0/16",)`` for
    one internal network of self-hosted backends. Never overrides link-local or metadata refusal."""

    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        networks: list[IPNetwork] = []
        for cidr in self.allowed_cidrs:
            try:
                networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                raise ValueError(f"allowed_cidrs: {cidr!r} is not a CIDR like 10.0.0.0/8") from None
        object.__setattr__(self, "_networks", tuple(networks))

    # ------------------------------------------------------------------ addresses
    def classify(self, address: str | IPAddress) -> Verdict:
        """The verdict for one IP address under this policy."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None or ip in _NAT64:
                # Pure translations: the packet goes to the IPv4 address, judge that alone.
                embedded = _embedded_ipv4(ip)
                assert embedded is not None
                return self._classify_one(embedded)
            embedded = _embedded_ipv4(ip)  # 6to4, Teredo: judge both, the stricter wins
            if embedded is not None:
                verdicts = (self._classify_one(ip), self._classify_one(embedded))
                return max(verdicts, key=lambda v: _SEVERITY[v])
        return self._classify_one(ip)

    def _classify_one(self, ip: IPAddress) -> Verdict:
        if ip in METADATA_ADDRESSES:
            return "metadata"
        if any(ip in net for net in _LINK_LOCAL if net.version == ip.version):
            return "link-local"
        if any(ip in net for net in _NOT_UNICAST if net.version == ip.version):
            return "not-unicast"
        if ip.is_loopback:
            if self.allow_loopback or self._in_allowed(ip):
                return "allowed"
            return "loopback"
        if not ip.is_global or ip.is_private:
            if self.allow_private or self._in_allowed(ip):
                return "allowed"
            return "private"
        return "allowed"

    def _in_allowed(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self._networks if net.version == ip.version)

    def check_address(self, address: str | IPAddress, *, field: str = "url", host: str | None = None) -> None:
        """Raise :class:`DestinationForbiddenError` unless the policy allows ``address``."""
        verdict = self.classify(address)
        if verdict != "allowed":
            shown = f"{host} resolves to {address}" if host and host != str(address) else f"{address}"
            raise DestinationForbiddenError([FieldIssue(field, f"{shown}: {_EXPLANATION[verdict]}")])

    # ------------------------------------------------------------------ URLs
    def check_url(self, url: str | httpx.URL, *, field: str = "url") -> None:
        """Check a URL before anything is sent to it; raise :class:`DestinationForbiddenError`.

        ``field`` names the spec field the URL came from (``spec.convex.url``), for the message.
        Host names are resolved only at connect time (by :class:`GuardedNetworkBackend`).
        """

        def refuse(message: str) -> DestinationForbiddenError:
            return DestinationForbiddenError([FieldIssue(field, message)])

        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            raise refuse("is not a valid URL; expected https://host[:port][/path]") from None
        if parsed.userinfo:
            raise refuse("must not contain a user name or password; put credentials in the Secret")
        host = parsed.host
        if not host:
            raise refuse("has no host; expected https://host[:port][/path]")
        name = host.rstrip(".").lower()
        if name in METADATA_HOSTNAMES:
            raise refuse(f"{name} is a cloud metadata service, which is never allowed")
        literal = _ip_literal(name)
        if literal is not None:  # host names are judged on what they resolve to, when connecting
            self.check_address(literal, field=field)
        scheme = parsed.scheme.lower()
        if scheme == "http":
            if not self.allow_plain_http:
                raise refuse(
                    "uses plain http, which this platform does not allow (credentials would travel "
                    "unencrypted); use https://"
                )
        elif scheme != "https":
            raise refuse("must be an https:// URL")


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def _default_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]).split("%", 1)[0], None)
    return list(seen)


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves, checks and connects to checked IPs only."""

    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        resolver: Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self._resolve: Resolver = resolver or _default_resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        name = host.rstrip(".").lower()
        if name in METADATA_HOSTNAMES:
            self.policy.check_url(f"https://{name}/")  # raises with the metadata explanation
        literal = _ip_literal(name)
        if literal is not None:
            addresses: Sequence[str] = [str(literal)]
        else:
            try:
                async with asyncio.timeout(timeout):
                    addresses = await self._resolve(host, port)
            except TimeoutError:
                raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
            except OSError as exc:  # socket.gaierror and friends
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
            if not addresses:
                raise httpcore.ConnectError(f"cannot resolve {host}: no addresses")
        for address in addresses:  # every address must pass, not just the one we would use
            self.policy.check_address(address, host=host)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not a permitted provider destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connection pool uses a :class:`GuardedNetworkBackend`.

    No proxy support on purpose: a proxy would make the connect-time check meaningless.
    """

    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits | None = None,
        resolver: Resolver | None = None,
        http2: bool = False,
    ) -> None:
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        super().__init__(verify=verify, trust_env=False, limits=limits, http2=http2)
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            # httpx changed its internals: fail loudly rather than run without the guard.
            raise RuntimeError("httpx.AsyncHTTPTransport has no httpcore pool to guard")
        self.policy = policy
        self.network_backend = GuardedNetworkBackend(policy, resolver=resolver)
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=http2,
            network_backend=self.network_backend,
        )


def guarded_client(policy: DestinationPolicy, **transport_options: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` over a :class:`GuardedTransport`: no env proxies, no redirects."""
    return httpx.AsyncClient(
        transport=GuardedTransport(policy, **transport_options),
        trust_env=False,
        follow_redirects=False,
    )
