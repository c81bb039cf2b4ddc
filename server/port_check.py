"""Checks that a port is free before a server binds it, so a taken port is one clear start-up error.

gRPC binds with SO_REUSEPORT by default (a second server would silently share the port) and reports a
failed bind only as "Failed to bind to address" plus a core log line; probing first names the port."""

from __future__ import annotations

import errno
import os
import socket

from server.core.errors import StartupError


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Raises StartupError when `port` on `host` cannot be bound now (port 0 always can)."""
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise StartupError(f"cannot listen for {what} on {host}:{port}: {error.strerror}") from error
    for family, kind, protocol, _name, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            # SO_REUSEADDR as servers set it (a port in TIME_WAIT is free), never SO_REUSEPORT.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                reason = (
                    "the port is already in use (is another server running?)"
                    if error.errno == errno.EADDRINUSE
                    else error.strerror or os.strerror(error.errno or 0)
                )
                raise StartupError(f"cannot listen for {what} on {host}:{port}: {reason}") from error
