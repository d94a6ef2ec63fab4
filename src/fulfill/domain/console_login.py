"""Who may use the console's local login (dev mode), which mints a token for any tenant and scope.

That login is a key to everything, so it exists only on a developer's own machine:

* it is on by default only in the laptop case: dev mode, the built-in development JWT secret and
  a loopback listener (the README's quick start); ``FULFILL_CONSOLE_DEV_LOGIN=true`` turns it on
  in other dev-mode deployments, ``false`` turns it off everywhere; production mode never has it;
* even when it is on, a request gets it only from loopback: the connection's client address is
  loopback, the ``Host`` it asked for names loopback (a DNS-rebinding page or a proxy passing a
  public host gets nothing), and it carries no forwarding header (a reverse proxy on the same
  machine connects from loopback on behalf of someone else).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

# Headers a reverse proxy adds: a request that carries one came from somewhere else.
FORWARDING_HEADERS = frozenset({"forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip"})


def is_loopback(host: str) -> bool:
    """An address or name that only reaches this machine: 127.0.0.0/8, ::1, ``localhost``."""
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def host_of(host_header: str) -> str:
    """The host part of a ``Host`` header (``127.0.0.1:8080``, ``[::1]:8080``, ``localhost``)."""
    value = host_header.strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def dev_login_enabled(
    *, auth_mode: str, uses_dev_secret: bool, listener_host: str, explicit: bool | None
) -> bool:
    """Whether this deployment offers the local login at all (see the module's doc)."""
    if auth_mode != "dev":
        return False
    if explicit is not None:
        return explicit
    return uses_dev_secret and is_loopback(listener_host)


def dev_login_refusal(
    *, enabled: bool, client_host: str | None, host_header: str, header_names: Iterable[str]
) -> str | None:
    """Why this request may not use the local login; None when it may."""
    if not enabled:
        return (
            "The local login is off here: it is on by default only in dev mode with the development "
            "secret on a loopback address; set FULFILL_CONSOLE_DEV_LOGIN=true to allow it."
        )
    forwarded = FORWARDING_HEADERS & {name.lower() for name in header_names}
    if client_host is None or not is_loopback(client_host) or forwarded:
        return "The local login answers only requests made on this machine, not through a proxy."
    if not is_loopback(host_of(host_header)):
        return "The local login answers only at a loopback address (127.0.0.1, [::1] or localhost)."
    return None
