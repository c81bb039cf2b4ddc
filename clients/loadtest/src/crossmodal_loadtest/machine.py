"""A description of the machine the load generator ran on, so results can be compared fairly."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "packages": {
            name: _version(name) for name in ("crossmodal-loadtest", "crossmodal-client", "grpcio", "numpy")
        },
    }
