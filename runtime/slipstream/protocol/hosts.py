"""Which hosts are loopback: one check for the SDK (a token over plain HTTP only to loopback),
`slipstream serve` (no token needed only on loopback) and the Ray backend (a runtime on
loopback cannot be reached from other nodes)."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback"]


def is_loopback(host: str) -> bool:
    """Only loopback literals (127.0.0.0/8, ::1, with or without brackets) and "localhost": a
    name like "127.0.0.1.nip.io" resolves elsewhere (or anywhere its owner chooses)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
