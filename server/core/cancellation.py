"""Lets a call that was cancelled (client gone, deadline passed, server stopping) stop its work.

The gRPC adapter creates a token per call and cancels it when the call's task is cancelled; the engine
code between them is synchronous, so the token travels in a context variable to the batcher's wait and
to every long stage, which calls check_cancelled between units of work. A server keeps the tokens of
the calls its worker threads are running in a CallRegistry, so that stopping can cut them off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from contextvars import ContextVar
from weakref import WeakKeyDictionary

from server.core.errors import Cancelled

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


class CallRegistry:
    """The calls that worker threads are running now, each with its token and what it runs.

    A call stays registered until its worker function returns, not merely until its caller stops
    waiting: that is what tells a stopping server whether threads are still busy.
    """

    def __init__(self) -> None:
        self._idle = threading.Condition()
        self._calls: dict[CancelToken, str] = {}

    def run(self, token: CancelToken, what: str, function, *args):
        """Runs function(*args) with `token` current, registered as `what` while it runs."""
        with self._idle:
            self._calls[token] = what
        try:
            return run_with_token(token, function, *args)
        finally:
            with self._idle:
                del self._calls[token]
                if not self._calls:
                    self._idle.notify_all()

    def running(self) -> list[str]:
        with self._idle:
            return list(self._calls.values())

    def cancel_all(self) -> list[str]:
        """Cancels every running call; returns what they were running (the calls cut off)."""
        with self._idle:
            calls = list(self._calls.items())
        for token, _ in calls:
            token.cancel()
        return [what for _, what in calls]

    def wait_idle(self, timeout: float) -> bool:
        """Waits up to `timeout` seconds for every running call to return; True when none is left."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._calls:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True


_registries: WeakKeyDictionary[Executor, CallRegistry] = WeakKeyDictionary()
_registries_lock = threading.Lock()


def calls_on(executor: Executor) -> CallRegistry:
    """The registry of the calls running on `executor` (one per server: each has its own executor)."""
    with _registries_lock:
        registry = _registries.get(executor)
        if registry is None:
            registry = _registries[executor] = CallRegistry()
        return registry
