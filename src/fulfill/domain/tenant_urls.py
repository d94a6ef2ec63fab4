"""Which URLs a tenant may make the service call: the Salesforce login URL of its credential (pure).

A tenant's admin chooses ``login_url``, and the service then POSTs the tenant's client secret (or
refresh token, or signed assertion) to ``{login_url}/services/oauth2/token``. The egress rules
(``domain/egress.py``) only keep that off non-public addresses the operator did not allow; the
hosts the operator allowed there are for its MCP targets, not for a tenant's secrets. So a login
URL must also name one of the provider's own hosts, over https on the standard port, with no path:

* ``FULFILL_SALESFORCE_LOGIN_HOSTS`` (default ``login.salesforce.com``, ``test.salesforce.com``,
  ``*.my.salesforce.com``): the hosts a login URL may name, https on port 443 only;
* ``FULFILL_SALESFORCE_LOGIN_HTTP_HOSTS`` (default none): loopback hosts (``127.0.0.1``, ``::1``,
  ``localhost``) a login URL may name over plain http, on any port: a local Salesforce for
  development and tests. Only loopback can be named, so no secret crosses a network in clear.

The ``instance_url`` a token endpoint answers is the provider's choice, not the tenant's: the
egress rules apply to it, as to every connection. ``FULFILL_SALESFORCE_LOGIN_URL``, the default
login URL, is the operator's own choice and is not held to these hosts either.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from fulfill.domain.egress import is_host_name, literal_address

DEFAULT_LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com", "*.my.salesforce.com")
_LOOPBACK_NAMES = frozenset({"localhost"})


class TenantUrlRefused(ValueError):
    """The URL is not one this service lets a tenant choose; nothing was sent."""


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    address = literal_address(host)
    return address is not None and address.is_loopback


@dataclass(frozen=True)
class LoginUrlPolicy:
    hosts: frozenset[str]
    suffixes: tuple[str, ...]  # ".my.salesforce.com" for "*.my.salesforce.com"
    http_hosts: frozenset[str]
    described: str  # the https hosts as configured, for a refusal to name them

    @classmethod
    def parse(cls, hosts: Iterable[str], http_hosts: Iterable[str] = ()) -> LoginUrlPolicy:
        exact: set[str] = set()
        suffixes: list[str] = []
        names: list[str] = []
        for raw in hosts:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            if entry.startswith("*."):
                if not is_host_name(entry[2:]) or "." not in entry[2:]:
                    raise ValueError(f"not a host name pattern: {raw.strip()[:100]}")
                suffixes.append(entry[1:])
            elif is_host_name(entry):
                exact.add(entry)
            else:
                raise ValueError(f"not a host name (or *.domain pattern): {raw.strip()[:100]}")
            names.append(entry)
        plain: set[str] = set()
        for raw in http_hosts:
            entry = raw.strip().lower().strip("[]")
            if not entry:
                continue
            if not _is_loopback(entry):
                raise ValueError(f"only loopback hosts may be reached over http: {raw.strip()[:100]}")
            plain.add(str(ipaddress.ip_address(entry)) if literal_address(entry) else entry)
        return cls(
            hosts=frozenset(exact),
            suffixes=tuple(suffixes),
            http_hosts=frozenset(plain),
            described=", ".join(names) or "none",
        )

    def _allows_https_host(self, host: str) -> bool:
        return host in self.hosts or any(host.endswith(suffix) for suffix in self.suffixes)

    def _allows_http_host(self, host: str) -> bool:
        address = literal_address(host)
        return (str(address) if address is not None else host) in self.http_hosts

    def check_login_url(self, url: str) -> str:
        """The login URL without a trailing slash, or :class:`TenantUrlRefused` with the reason
        (never quoting more of the URL than its host)."""
        scheme, host, port, path = _parts(url)
        if path not in ("", "/"):
            raise TenantUrlRefused("a login URL has no path: give only https://host")
        if scheme == "https":
            if not self._allows_https_host(host):
                raise TenantUrlRefused(
                    f"{host[:253]} is not a Salesforce login host this service allows "
                    f"(FULFILL_SALESFORCE_LOGIN_HOSTS: {self.described})"
                )
            if port not in (None, 443):
                raise TenantUrlRefused("a login URL uses the standard https port (443)")
            return url.strip().rstrip("/")
        if scheme == "http" and self._allows_http_host(host):
            return url.strip().rstrip("/")
        raise TenantUrlRefused(
            "a login URL must be https:// (http:// only for a loopback host named in "
            "FULFILL_SALESFORCE_LOGIN_HTTP_HOSTS)"
        )


def _parts(url: str) -> tuple[str, str, int | None, str]:
    value = url.strip()
    if not value or len(value) > 512 or any(ord(char) < 0x21 or ord(char) == 0x7F for char in value):
        raise TenantUrlRefused("the URL must have 1 to 512 characters, without spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise TenantUrlRefused("the URL cannot be parsed (check the host and port)") from None
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise TenantUrlRefused("the URL must be plain: no user info, query or fragment")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise TenantUrlRefused("the URL has no host")
    return parts.scheme.lower(), host, port, parts.path
