"""Listening sockets for the HTTP app and the data channel, TLS included."""

from __future__ import annotations

import socket
from typing import Any


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def tls_server_context(cert: str, key: str) -> Any:
    """The server side of TLS for HTTPS and the data channel; ValueError says what is wrong."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ValueError(f"no such file: {exc.filename}") from None
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"cannot use {cert} with {key} as certificate and key: {exc}") from None
    return ctx
