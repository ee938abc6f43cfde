"""Where a webhook may post (docs/RULES.md#webhook-addresses): one rule for creation, for
a change of URL and for every attempt.

`https://` unless `WEBHOOK_ALLOW_HTTP=true`; never to an address that is not globally
routable — loopback, private, link-local (cloud metadata among them), shared, reserved,
multicast, unspecified — unless `WEBHOOK_ALLOW_PRIVATE=true`: an address literal, or a
name that resolves to one. At creation a name that does not resolve (yet) is accepted; an
attempt resolves again, refuses a blocked address, and connects to the address it
checked (no second lookup a rebinding name could answer differently).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.errors import InvalidInput, field_error

RESOLVE_SECONDS = 3.0
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class AddressRules:
    allow_http: bool
    allow_private: bool


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str  # as written in the URL (a name, or an address without brackets)
    port: int


class BlockedAddress(Exception):
    """The target is, or resolves to, an address webhooks may not reach."""


class Unresolved(Exception):
    """The target's name does not resolve (now)."""


def invalid_url(detail: str) -> InvalidInput:
    return InvalidInput(
        detail,
        code="invalid_webhook_url",
        errors=[field_error(["body", "url"], detail, "invalid_webhook_url")],
    )


def parse(url: str, rules: AddressRules) -> Target:
    """The URL's parts, or the 422 `invalid_webhook_url` saying what is wrong with it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise invalid_url(f"The URL cannot be read: {exc}.") from None
    schemes = ("https", "http") if rules.allow_http else ("https",)
    if parts.scheme not in schemes:
        raise invalid_url(
            "A webhook URL must start with https://"
            + ("" if rules.allow_http else " (http:// needs WEBHOOK_ALLOW_HTTP=true)")
            + "."
        )
    if not parts.hostname:
        raise invalid_url("A webhook URL must name a host.")
    if parts.username is not None or parts.password is not None:
        raise invalid_url("A webhook URL may not carry a user name or password.")
    if parts.fragment:
        raise invalid_url("A webhook URL may not have a #fragment.")
    default = 443 if parts.scheme == "https" else 80
    return Target(url, parts.scheme, parts.hostname, port or default)


def blocked(address: IPAddress) -> bool:
    """Not a globally routable unicast address (docs/RULES.md#webhook-addresses)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def resolve(target: Target) -> list[IPAddress]:
    """The target's addresses: itself if it is one, else what its name resolves to now."""
    address = literal(target.host)
    if address is not None:
        return [address]
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            infos = await loop.getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise Unresolved(f"{target.host} does not resolve: {exc}") from None
    found: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        found[ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])] = None
    if not found:
        raise Unresolved(f"{target.host} has no address")
    return list(found)


async def checked_address(target: Target, rules: AddressRules) -> IPAddress:
    """The address an attempt connects to: the first the target resolves to, once every
    one it resolves to is allowed (a name with one private address among public ones is
    refused whole)."""
    addresses = await resolve(target)
    if not rules.allow_private:
        bad = [a for a in addresses if blocked(a)]
        if bad:
            raise BlockedAddress(f"{target.host} resolves to {bad[0]}, which is not public")
    return addresses[0]


async def check_new_url(url: str, rules: AddressRules) -> str:
    """A URL given to create or change a webhook: 422 `invalid_webhook_url` if it may not be
    used; a name that does not resolve yet is accepted (each attempt checks again)."""
    target = parse(url, rules)
    try:
        await checked_address(target, rules)
    except BlockedAddress as exc:
        raise invalid_url(
            f"{exc}; webhooks may not reach loopback, private, link-local or metadata "
            "addresses (WEBHOOK_ALLOW_PRIVATE=true allows them)."
        ) from None
    except Unresolved:
        pass
    return url
