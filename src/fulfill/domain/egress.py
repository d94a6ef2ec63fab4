"""Where the gateway may connect: the egress rules for remote MCP targets (pure, no I/O).

A target URL must be ``http`` or ``https``, without credentials in it. Every address its host
resolves to must be public: loopback, private, link-local, cloud-metadata, unspecified, multicast,
reserved and other special-purpose addresses (IPv4 and IPv6, including IPv4 addresses embedded in
IPv6: mapped, 6to4, NAT64; Teredo is refused outright) are refused unless the allow-list
(``FULFILL_GATEWAY_EGRESS_ALLOW``) names the host or a network containing the address.

Resolving the name and connecting to the checked address is the gateway's job
(``gateway/egress.py``); this module only decides.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048

# Instance-metadata and host-agent endpoints of the large clouds. Most are link-local or private
# already; they are named so that the refusal says what they are (168.63.129.16 is public).
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(value)
    for value in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.123",  # AWS time sync
        "fd00:ec2::254",  # AWS IPv6 metadata
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure host agent (wireserver)
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class EgressRefused(Exception):
    """The destination is not allowed. Nothing was sent."""


class InvalidTargetUrl(ValueError):
    """The URL cannot be a target (scheme, credentials, host, port)."""


@dataclass(frozen=True)
class TargetUrl:
    url: str
    scheme: str
    host: str  # lowercase; an IPv6 literal without brackets
    port: int


def parse_target_url(url: str) -> TargetUrl:
    """Check the shape of a target URL. Raises :class:`InvalidTargetUrl` with the reason."""
    value = url.strip()
    if not value or len(value) > MAX_URL_LENGTH:
        raise InvalidTargetUrl(f"the URL must have 1 to {MAX_URL_LENGTH} characters")
    if any(ord(char) < 0x21 or ord(char) == 0x7F for char in value):
        raise InvalidTargetUrl("the URL must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidTargetUrl("the URL cannot be parsed (check the host and port)") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidTargetUrl("the URL scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise InvalidTargetUrl("the URL must not carry credentials; use the target's auth instead")
    if parts.fragment:
        raise InvalidTargetUrl("the URL must not have a fragment")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidTargetUrl("the URL has no host")
    if literal_address(host) is None and not is_host_name(host):
        raise InvalidTargetUrl("the URL's host is not a valid host name or IP address")
    return TargetUrl(url=value, scheme=scheme, host=host, port=port or (443 if scheme == "https" else 80))


def is_host_name(host: str) -> bool:
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    if all(label.isdigit() for label in labels):
        return False  # "2130706433" or "127.1": numeric forms resolvers read as addresses
    return all(_HOST_LABEL.match(label) for label in labels)


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def address_refusal(address: IPAddress) -> str | None:
    """Why an address is not a public destination, or None when it is one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            kind, inner = embedded
            reason = address_refusal(inner)
            return f"{reason} ({kind})" if reason else None
        if address.teredo is not None:
            return "Teredo tunnel"
    if address in _METADATA_ADDRESSES:
        return "cloud metadata"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "special-purpose"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class EgressAllowList:
    """``FULFILL_GATEWAY_EGRESS_ALLOW``: host names (``tickets.internal``, ``*.corp.example``),
    addresses and CIDR networks (``10.0.0.0/8``, ``127.0.0.1``) that may be reached although
    they are not public. A named host is trusted whatever it resolves to."""

    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> EgressAllowList:
        hosts: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry.startswith("*."):
                if not is_host_name(entry[2:]):
                    raise ValueError(f"not a host name pattern: {raw.strip()[:100]}")
                suffixes.append(entry[1:])
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not is_host_name(entry):
                raise ValueError(f"not a host name, address or CIDR network: {raw.strip()[:100]}")
            hosts.add(entry.rstrip("."))
        return cls(hosts=frozenset(hosts), suffixes=tuple(suffixes), networks=tuple(networks))

    def allows_host(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return name in self.hosts or any(name.endswith(suffix) for suffix in self.suffixes)

    def allows_address(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(
            candidate.version == network.version and candidate in network
            for candidate in candidates
            for network in self.networks
        )


def addresses_refusal(host: str, addresses: Iterable[str], allow: EgressAllowList) -> str | None:
    """Why ``host`` must not be reached at one of the ``addresses`` it resolved to, or None when
    every one of them may be."""
    for value in addresses:
        address = literal_address(value)
        if address is None:
            return f"{host} resolves to something that is not an IP address"
        reason = destination_refusal(host, address, allow)
        if reason is not None:
            return reason
    return None


def destination_refusal(host: str, address: IPAddress, allow: EgressAllowList) -> str | None:
    """Why ``host`` must not be reached at ``address``, or None when it may be."""
    if allow.allows_host(host) or allow.allows_address(address):
        return None
    reason = address_refusal(address)
    if reason is None:
        return None
    return (
        f"{host} resolves to a {reason} address ({address}); FULFILL_GATEWAY_EGRESS_ALLOW does not allow it"
    )


def encoded_body(content_encoding: str | None) -> str | None:
    """The encoding an answer's ``Content-Encoding`` header names, None for the body as it is
    (no header, empty, or ``identity``). A body counted on the wire must not be decoded: deflate
    expands up to about a thousand times, so the client asks for ``identity`` and refuses any other.
    """
    encoding = (content_encoding or "").strip().lower()
    return None if encoding in ("", "identity") else encoding
