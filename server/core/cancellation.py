"""Lets a call that was cancelled (client gone, deadline passed, server stopping) stop its work.

The protocol's call runner creates a token per call and cancels it when the call's task is cancelled.
The token travels in a context variable: to the Pendings the engine awaits (a cancelled call withdraws
its queued work) and, through run_in_worker, to every CPU stage on a worker thread, which calls
check_cancelled between units of work. A server keeps the tokens of its calls in a CallRegistry while
their coroutine or any of their worker stages runs, so that stopping can cut them off and name them.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
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
    with current_call(token):
        return function(*args)


@contextmanager
def current_call(token: CancelToken) -> Iterator[None]:
    """Makes `token` the current token of the code inside (a coroutine's task, or this thread)."""
    reset = _current.set(token)
    try:
        yield
    finally:
        _current.reset(reset)


class CallRegistry:
    """The calls running now, each with its token and what it runs.

    A call is held while its coroutine runs and while any of its stages runs on a worker thread: it
    stays registered until the last of them returns, not merely until its caller stops waiting. That is
    what tells a stopping server whether threads are still busy.
    """

    def __init__(self) -> None:
        self._idle = threading.Condition()
        self._calls: dict[CancelToken, str] = {}
        self._holds: dict[CancelToken, int] = {}

    @contextmanager
    def registered(self, token: CancelToken, what: str) -> Iterator[None]:
        """Holds the call of `token` (known as `what`, unless already held under a name) inside."""
        with self._idle:
            self._calls.setdefault(token, what)
            self._holds[token] = self._holds.get(token, 0) + 1
        try:
            yield
        finally:
            with self._idle:
                self._holds[token] -= 1
                if self._holds[token] == 0:
                    del self._holds[token], self._calls[token]
                if not self._calls:
                    self._idle.notify_all()

    def run(self, token: CancelToken, what: str, function, *args):
        """Runs function(*args) with `token` current, registered as `what` while it runs."""
        with self.registered(token, what):
            return run_with_token(token, function, *args)

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


def stage_name(function) -> str:
    """What a call or stage is known by: the function's qualified name (its repr only when it has none:
    the repr of a bound method holds its whole object's, which costs more than many a stage)."""
    name = getattr(function, "__qualname__", None)
    return name if name is not None else repr(function)


async def run_in_worker(executor: Executor, function, *args):
    """Runs function(*args) on a worker thread of `executor`, in a copy of the caller's context (its
    cancellation token and the models its call leases). While the thread runs it, the current call stays
    registered on the executor, so a stopping server knows the thread is busy."""
    token = current_token()
    context = contextvars.copy_context()

    def stage():
        if token is None:
            return context.run(function, *args)
        with calls_on(executor).registered(token, stage_name(function)):
            return context.run(function, *args)

    return await asyncio.get_running_loop().run_in_executor(executor, stage)


async def run_here(function, *args):
    """Runs function(*args) on the event loop itself, as a stage of the current call (its token and
    leases are already current there). For work cheaper than the hop to a worker thread and back (the
    queue, a thread wake-up, the loop's wake-up: tens to hundreds of microseconds on a busy machine);
    it has the signature of an offload, so a stage can be given either."""
    return function(*args)
