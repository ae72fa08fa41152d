"""Destination policy: where the operator may send requests with tenants' credentials (DESIGN §5).

Tenants choose the URLs of their backends, and the operator fetches them from inside the cluster, so
a URL is a way to make the operator talk to anything its pod can reach. This module is the policy
alone (a value, no I/O but :func:`system_resolver`); :mod:`oneie_operator.providers.http`, the one
transport of every provider call, applies it twice:

1. :meth:`DestinationPolicy.check_url` looks at the URL itself before anything is sent: the scheme
   (``https``; ``http`` only where the platform allows plain http), credentials embedded in the URL,
   well-known metadata host names, and literal IP addresses.
2. :meth:`DestinationPolicy.check_resolved` judges the addresses the operator *actually connects
   to*: the transport's connector resolves the host name itself, refuses the host if **any**
   resolved address is forbidden (so a name cannot mix a public and a metadata address), and then
   connects to the checked IP addresses only, never to the name again. That defeats DNS rebinding
   (the name is resolved once, by us, and the socket goes to the address we checked). TLS still
   verifies the URL's host name (SNI and certificate); ``tests/providers/test_providers_netguard.py``
   proves it with a certificate issued for a name served on 127.0.0.1.

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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

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

    def check_resolved(self, host: str, addresses: Sequence[str]) -> None:
        """Refuse ``host`` unless **every** address it resolved to is allowed (connect time).

        A name cannot mix a public and a metadata address: one forbidden address refuses them all.
        """
        name = host.rstrip(".").lower()
        if name in METADATA_HOSTNAMES:
            self.check_url(f"https://{name}/")  # raises with the metadata explanation
        for address in addresses:
            self.check_address(address, host=host)

    # ------------------------------------------------------------------ URLs
    def check_url(self, url: str | httpx.URL, *, field: str = "url") -> None:
        """Check a URL before anything is sent to it; raise :class:`DestinationForbiddenError`.

        ``field`` names the spec field the URL came from (``spec.convex.url``), for the message.
        Host names are judged only at connect time (:meth:`check_resolved`).
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
        literal = ip_literal(name)
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


def ip_literal(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is an IP literal (``[::1]`` too), else ``None``."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``getaddrinfo`` gives for ``host`` (scope ids dropped), in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]).split("%", 1)[0], None)
    return list(seen)
