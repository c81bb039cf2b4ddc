"""Lets a call that was cancelled (client gone, deadline passed) withdraw its queued work.

The gRPC adapter creates a token per call and cancels it when the call's task is cancelled; the engine
code between them is synchronous, so the token travels in a context variable to the batcher's wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar

from server.errors import Cancelled

_current: ContextVar[CancelToken | None] = ContextVar("crossmodal_cancel_token", default=None)


class CancelToken:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Runs `callback` on cancellation (now, if already cancelled); returns its unregister function."""
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(callback)
                return lambda: self._remove(callback)
        callback()
        return lambda: None

    def _remove(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)


def current_token() -> CancelToken | None:
    return _current.get()


def check_cancelled(stage: str) -> None:
    """Raises Cancelled when the current call was cancelled: long synchronous stages (decoding, jieba,
    tokenising, decoder steps) call it between units of work so that abandoned work stops there."""
    token = _current.get()
    if token is not None and token.cancelled:
        raise Cancelled(f"call cancelled during {stage}")


def run_with_token(token: CancelToken, function, *args):
    """Calls function(*args) with `token` as the current token of this thread's context."""
    reset = _current.set(token)
    try:
        return function(*args)
    finally:
        _current.reset(reset)
