"""Which addresses a webhook may be sent to.

By default only globally routable unicast addresses: loopback, private (RFC 1918, ULA), link-local
(169.254/16 with the cloud metadata address, fe80::/10), CGNAT (100.64/10), multicast, documentation,
reserved and unspecified addresses are refused, unless LEDGER_WEBHOOK_ALLOW_CIDRS names their range.

Checked twice, because aiohttp never calls its resolver for an IP literal: `GuardedResolver` drops the
refused addresses a hostname resolves to (the connection can only go to the addresses it kept), and
`check_literal` refuses an IP-literal URL before any connection is made.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from ledgerd.service.webhooks.config import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SsrfBlocked(OSError):
    """The destination is an address webhooks may not be sent to (an OSError: aiohttp wraps it)."""


def is_allowed(address: IPAddress, allow: Sequence[IPNetwork]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in allow if network.version == address.version):
        return True
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


def literal_address(host: str) -> IPAddress | None:
    """The address of an IP-literal host (``[::1]`` or ``10.0.0.1``); None for a hostname."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_literal(host: str, allow: Sequence[IPNetwork]) -> None:
    address = literal_address(host)
    if address is not None and not is_allowed(address, allow):
        raise SsrfBlocked(f"{address} is a non-public address (allow it with LEDGER_WEBHOOK_ALLOW_CIDRS)")


class GuardedResolver(AbstractResolver):
    """aiohttp's default resolver, keeping only the addresses webhooks may be sent to."""

    def __init__(self, allow: Sequence[IPNetwork], inner: AbstractResolver | None = None) -> None:
        self.allow = tuple(allow)
        self.inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        kept = [result for result in results if is_allowed(ipaddress.ip_address(result["host"]), self.allow)]
        if not kept:
            found = ", ".join(sorted({result["host"] for result in results}))
            raise SsrfBlocked(
                f"{host} resolves only to non-public addresses ({found}); "
                "allow them with LEDGER_WEBHOOK_ALLOW_CIDRS"
            )
        return kept

    async def close(self) -> None:
        await self.inner.close()
