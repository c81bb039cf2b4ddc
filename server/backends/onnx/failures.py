"""Which ONNX Runtime errors during a run mean the version can never run again.

A failed execution provider (onnxruntime's EPFail) or a CUDA library failure (an illegal address, a lost
device, a broken context) leaves the session or the device unusable: every later run would fail too, so
the version must be taken out of selection. Out of memory is not among them: a smaller batch may fit.
Anything else (bad shapes, a cancelled run) concerns one batch only.
"""

from __future__ import annotations

import re

from onnxruntime.capi.onnxruntime_pybind11_state import EPFail

_DEVICE_FAILURE = re.compile(r"\b(CUDA|CUBLAS|CUDNN|CUFFT|CURAND)[ _](failure|error)\b", re.IGNORECASE)
_OUT_OF_MEMORY = re.compile(r"out of memory|failed to allocate", re.IGNORECASE)


def unrecoverable(error: BaseException) -> str | None:
    """Why `error` ends the version, or None when later runs may still succeed."""
    message = str(error)
    if isinstance(error, EPFail):
        return f"the execution provider failed: {message}"
    if _DEVICE_FAILURE.search(message) and not _OUT_OF_MEMORY.search(message):
        return f"the device failed: {message}"
    return None
