"""Which OpenVINO errors during a run mean the version can never run again.

OpenVINO reports every failure as a RuntimeError whose message names where it happened. A lost or reset
device, or a plugin that reports its compiled model unusable, fails every later run too, so the version is
taken out of selection. Anything else (a shape a graph refuses, memory that a smaller batch may find)
concerns one batch only; bad requests never get here: the kind classes refuse them first.
"""

from __future__ import annotations

import re

_BROKEN = re.compile(
    r"device (was )?(lost|removed|reset|hung)|DEVICE_LOST|CL_DEVICE_NOT_AVAILABLE"
    r"|(compiled model|plugin|infer request) (is )?(broken|unusable|in an invalid state)",
    re.IGNORECASE,
)


def unrecoverable(error: BaseException) -> str | None:
    """Why `error` ends the version, or None when later runs may still succeed."""
    message = str(error)
    if isinstance(error, RuntimeError) and _BROKEN.search(message):
        return f"OpenVINO's device failed: {message}"
    return None
