"""A server-wide budget of bytes that calls reserve before they allocate (decoded images, request bodies).

Decoding an image costs memory in proportion to its pixels, not to its encoded bytes: a 37-byte GIF may
declare a 6000x6000 screen. Each call reserves its estimate (known from the header, before decoding) and
releases it when done, so the memory held by all calls together stays under one limit whatever the
number of workers. A reservation that does not fit waits in a bounded, first-come-first-served queue;
beyond the queue, after the wait, or when it could never fit, it is refused with LimitExceeded naming the
item and the budget. A waiting call whose token is cancelled stops waiting with Cancelled.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from server.core.cancellation import current_token
from server.core.errors import Cancelled, LimitExceeded

BUDGET_NAME = "memory budget (--max-decode-memory)"


def describe_bytes(nbytes: int) -> str:
    """Bytes in the unit a reader expects: 1536 -> '1.5 KiB'."""
    value = float(nbytes)
    for unit in ("bytes", "KiB", "MiB"):
        if value < 1024:
            return f"{nbytes} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.2f} GiB"


class Reservation:
    """Bytes held in a budget until `release()` or the end of a `with` block; a second release is a no-op."""

    def __init__(self, budget: MemoryBudget, nbytes: int) -> None:
        self._budget = budget
        self.nbytes = nbytes
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._budget._release(self.nbytes)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class MemoryBudget:
    def __init__(self, limit_bytes: int, max_waiting: int, max_wait_seconds: float) -> None:
        if limit_bytes <= 0:
            raise ValueError(f"the memory budget must be positive, got {limit_bytes}")
        if max_waiting < 0:
            raise ValueError(f"the number of waiting calls must not be negative, got {max_waiting}")
        if max_wait_seconds < 0:
            raise ValueError(f"the wait for memory must not be negative, got {max_wait_seconds}")
        self._limit = limit_bytes
        self._max_waiting = max_waiting
        self._max_wait = max_wait_seconds
        self._used = 0
        self._condition = threading.Condition()
        self._queue: deque[object] = deque()  # one ticket per waiting reservation, oldest first

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def used(self) -> int:
        with self._condition:
            return self._used

    @property
    def waiting(self) -> int:
        with self._condition:
            return len(self._queue)

    def try_reserve(self, nbytes: int, what: str) -> Reservation | None:
        """The reservation if it fits now and nobody waits before it; None otherwise (never waits).
        Raises LimitExceeded when `nbytes` is more than the whole budget."""
        self._check_size(nbytes, what)
        with self._condition:
            if self._queue or not self._fits(nbytes):
                return None
            self._used += nbytes
            return Reservation(self, nbytes)

    def reserve(self, nbytes: int, what: str) -> Reservation:
        """Holds `nbytes`, waiting (bounded in count and time) while the budget is full."""
        self._check_size(nbytes, what)
        with self._condition:
            if not self._queue and self._fits(nbytes):
                self._used += nbytes
                return Reservation(self, nbytes)
            if len(self._queue) >= self._max_waiting:
                raise LimitExceeded(
                    f"{what}: needs {describe_bytes(nbytes)} but the server's {BUDGET_NAME} of "
                    f"{describe_bytes(self._limit)} is in use ({describe_bytes(self._used)}) and "
                    f"{len(self._queue)} calls already wait for it; retry later"
                )
        return self._wait(nbytes, what)

    def _wait(self, nbytes: int, what: str) -> Reservation:
        token = current_token()
        ticket = object()
        unregister = token.on_cancel(self._wake_all) if token is not None else (lambda: None)
        deadline = time.monotonic() + self._max_wait
        try:
            with self._condition:
                self._queue.append(ticket)
                try:
                    while True:
                        if token is not None and token.cancelled:
                            raise Cancelled(f"call cancelled while {what} waited for decode memory")
                        if self._queue[0] is ticket and self._fits(nbytes):
                            self._used += nbytes
                            return Reservation(self, nbytes)
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise LimitExceeded(
                                f"{what}: waited {self._max_wait:g} s for {describe_bytes(nbytes)} of the "
                                f"server's {BUDGET_NAME} of {describe_bytes(self._limit)}; it stayed in use "
                                f"({describe_bytes(self._used)}); retry later"
                            )
                        self._condition.wait(left)
                finally:
                    self._queue.remove(ticket)
                    self._condition.notify_all()  # the next in line may fit now
        finally:
            unregister()

    def _check_size(self, nbytes: int, what: str) -> None:
        if nbytes < 0:
            raise ValueError(f"{what}: cannot reserve a negative number of bytes ({nbytes})")
        if nbytes > self._limit:
            raise LimitExceeded(
                f"{what}: needs an estimated {describe_bytes(nbytes)}, more than the server's whole "
                f"{BUDGET_NAME} of {describe_bytes(self._limit)}"
            )

    def _fits(self, nbytes: int) -> bool:
        return self._used + nbytes <= self._limit

    def _release(self, nbytes: int) -> None:
        with self._condition:
            self._used -= nbytes
            self._condition.notify_all()

    def _wake_all(self) -> None:
        with self._condition:
            self._condition.notify_all()
