"""A dynamic batcher: items submitted by many calls join one run of a batch function.

The batcher knows nothing of models. A call submits a list of items (and a group: only items of one
group may share a run, e.g. translations with the same beam settings) and gets a future of the outputs,
one per item, in order. Worker threads take the oldest queued item's group, wait up to the queue delay
for a fuller batch, take items in arrival order (a large request is split across runs), run the
function once, check that it gave one output per item, and hand the outputs back. A failed run fails
every call that had an item in it; calls never hang. The queue is bounded: a call that would overflow
it is refused at once. A cancelled call withdraws its queued items; a run all of whose calls were
cancelled stops at the batch function's next check (see batch_run.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from server.batching.batch_run import BatchRun
from server.batching.settings import BatchSettings
from server.core.cancellation import current_token, run_with_token
from server.core.errors import Cancelled, ModelNotReady, Overloaded

log = logging.getLogger(__name__)

BatchFunction = Callable[[Sequence[Any]], Sequence[Any]]


class BatchObserver(Protocol):
    """Told about every run (metrics); called on the worker thread, so it must be quick."""

    def batch_done(self, size: int, waits: Sequence[float], seconds: float, failed: bool) -> None:
        """`waits`: how long each call's items queued before this run; `seconds`: the run's duration."""


@dataclass(eq=False)
class _Call:
    """One submission: its items, how far they have been taken, and the outputs gathered so far."""

    items: Sequence[Any]
    group: Hashable
    enqueued_at: float
    future: Future = field(default_factory=Future)
    taken: int = 0  # items [0, taken) are in a run or done
    finished: int = 0
    outputs: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outputs = [None] * len(self.items)

    @property
    def waiting(self) -> int:
        return len(self.items) - self.taken


@dataclass(frozen=True)
class _Slice:
    call: _Call
    start: int
    count: int


@dataclass
class BatchStats:
    """What the batcher did, cumulatively: runs, items, calls, and where the time went (nanoseconds)."""

    runs: int = 0
    items: int = 0
    failed_runs: int = 0
    cancelled_runs: int = 0  # stopped part-way because every call in them was cancelled
    batch_sizes: Counter = field(default_factory=Counter)  # batch size -> runs
    batch_ns: Counter = field(default_factory=Counter)  # batch size -> time in those runs
    calls_ok: int = 0
    calls_ok_ns: int = 0  # from queueing to the last output
    calls_failed: int = 0
    calls_failed_ns: int = 0
    queued: int = 0  # call pieces that waited for a run
    queue_ns: int = 0
    compute_ns: int = 0
    last_run_ms: int = 0  # wall clock, milliseconds since the epoch

    def snapshot(self) -> BatchStats:
        copy = replace(self)
        copy.batch_sizes, copy.batch_ns = Counter(self.batch_sizes), Counter(self.batch_ns)
        return copy


class DynamicBatcher:
    def __init__(self, name: str, run_batch: BatchFunction, settings: BatchSettings) -> None:
        self.name = name
        self.settings = settings
        self._run_batch = run_batch
        self._cond = threading.Condition()
        self._queue: deque[_Call] = deque()
        self._queued_items = 0
        self._stopping = False
        self._stats = BatchStats()
        self.observer: BatchObserver | None = None  # set once the model serves (warm-up is not counted)
        self._workers = [
            threading.Thread(target=self._work, name=f"batch-{name}-{i}", daemon=True)
            for i in range(settings.workers)
        ]
        for worker in self._workers:
            worker.start()

    # -- callers ---------------------------------------------------------------------------------------

    def submit(self, items: Sequence[Any], group: Hashable = None) -> Future:
        """Queues `items`; the future's result is the list of their outputs, in order."""
        call = _Call(items, group, time.monotonic())
        if not items:
            call.future.set_result([])
            return call.future
        with self._cond:
            if self._stopping:
                raise ModelNotReady(f"model {self.name} is shutting down and takes no new work")
            limit = self.settings.max_queue_items
            if self._queued_items + len(items) > limit:
                raise Overloaded(
                    f"model {self.name} is overloaded: {self._queued_items} items queued, {len(items)} "
                    f"more would pass its queue limit of {limit}; retry later"
                )
            self._queue.append(call)
            self._queued_items += len(items)
            self._cond.notify()
        return call.future

    def run(self, items: Sequence[Any], group: Hashable = None) -> list[Any]:
        """Submits and waits, holding this thread (tools, tests); calls await a Pending instead. A
        cancelled call (see cancellation.py) withdraws what has not run yet."""
        return self.wait(self.submit(items, group))

    def wait(self, future: Future) -> list[Any]:
        token = current_token()
        if token is None:
            return future.result()
        unregister = token.on_cancel(lambda: self.withdraw(future))
        try:
            return future.result()
        finally:
            unregister()

    def withdraw(self, future: Future) -> None:
        """Removes the call's untaken items from the queue and fails it with Cancelled."""
        with self._cond:
            for call in self._queue:
                if call.future is future:
                    self._drop(call)
                    break
        if not future.done():
            _fail(future, Cancelled(f"model {self.name}: the call was cancelled"))

    def queued_items(self) -> int:
        with self._cond:
            return self._queued_items

    def stats(self) -> BatchStats:
        with self._cond:
            return self._stats.snapshot()

    def stop(self, timeout: float | None = None) -> None:
        """Refuses new work, runs what is queued, then ends the worker threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join(timeout)

    # -- workers ---------------------------------------------------------------------------------------

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._execute(batch)

    def _next_batch(self) -> list[_Slice] | None:
        with self._cond:
            while True:
                if not self._queue:
                    if self._stopping:
                        return None
                    self._cond.wait()
                    continue
                head = self._queue[0]
                available = self._available(head.group)
                patience = head.enqueued_at + self.settings.max_queue_delay_s - time.monotonic()
                if available >= self.settings.target_batch_size or patience <= 0 or self._stopping:
                    batch = self._take(head.group, self.settings.cut(available))
                    if self._queue:
                        self._cond.notify()  # work is left: another idle instance may start on it
                    return batch
                self._cond.wait(patience)

    def _available(self, group: Hashable) -> int:
        if not self.settings.join_requests:
            return self._queue[0].waiting
        return sum(call.waiting for call in self._queue if call.group == group)

    def _take(self, group: Hashable, size: int) -> list[_Slice]:
        slices, room = [], size
        for call in list(self._queue):
            if room == 0:
                break
            if call.group != group:
                continue
            count = min(room, call.waiting)
            slices.append(_Slice(call, call.taken, count))
            call.taken += count
            room -= count
            self._queued_items -= count
            if call.waiting == 0:
                self._queue.remove(call)
            if not self.settings.join_requests:
                break
        return slices

    def _drop(self, call: _Call) -> None:
        self._queued_items -= call.waiting
        call.taken = len(call.items)
        if call in self._queue:
            self._queue.remove(call)

    def _execute(self, batch: list[_Slice]) -> None:
        live = [s for s in batch if not s.call.future.done()]  # withdrawn or failed calls need no work
        items = [item for s in live for item in s.call.items[s.start : s.start + s.count]]
        if not items:
            return
        started = time.monotonic()
        waits = [started - s.call.enqueued_at for s in live]
        run = BatchRun([s.call.future for s in live], [s.count for s in live])
        try:
            try:
                outputs = run_with_token(run, self._run_batch, items)
            finally:
                run.close()
            if len(outputs) != len(items):
                raise RuntimeError(
                    f"model {self.name}: the batch function gave {len(outputs)} outputs "
                    f"for {len(items)} items"
                )
        except Exception as error:  # every call in the batch gets the error; none may hang
            if run.cancelled:
                self._stopped(live, len(items), waits, started)
                return
            log.warning("model %s: a batch of %d items failed: %s", self.name, len(items), error)
            self._observe(len(items), waits, started, failed=True)
            ended = time.monotonic()
            with self._cond:
                self._stats.failed_runs += 1
                self._count_run(len(items), waits, started, ended)
                for piece in live:
                    if not piece.call.future.done():
                        self._stats.calls_failed += 1
                        self._stats.calls_failed_ns += int((ended - piece.call.enqueued_at) * 1e9)
                    self._drop(piece.call)
            for piece in live:
                _fail(piece.call.future, error)
            return
        self._observe(len(items), waits, started, failed=False)
        ended = time.monotonic()
        done = []
        with self._cond:
            self._stats.runs += 1
            self._stats.items += len(items)
            self._count_run(len(items), waits, started, ended)
            offset = 0
            for piece in live:
                piece.call.outputs[piece.start : piece.start + piece.count] = outputs[
                    offset : offset + piece.count
                ]
                offset += piece.count
                piece.call.finished += piece.count
                if piece.call.finished == len(piece.call.items):
                    done.append(piece.call)
                    self._stats.calls_ok += 1
                    self._stats.calls_ok_ns += int((ended - piece.call.enqueued_at) * 1e9)
        for call in done:  # futures complete outside the lock: their callbacks may submit more work
            with contextlib.suppress(InvalidStateError):  # withdrawn meanwhile: the caller has gone
                call.future.set_result(call.outputs)

    def _stopped(self, live: list[_Slice], size: int, waits: list[float], started: float) -> None:
        """A run that stopped because all its calls were cancelled: they already have their answer."""
        ended = time.monotonic()
        log.info(
            "model %s: a run of %d items stopped after %.2fs: every call in it was cancelled",
            self.name,
            size,
            ended - started,
        )
        with self._cond:
            self._stats.cancelled_runs += 1
            self._count_run(size, waits, started, ended)
            for piece in live:
                self._drop(piece.call)

    def _count_run(self, size: int, waits: list[float], started: float, ended: float) -> None:
        """Statistics of one run (under the lock)."""
        run_ns = int((ended - started) * 1e9)
        self._stats.batch_sizes[size] += 1
        self._stats.batch_ns[size] += run_ns
        self._stats.compute_ns += run_ns
        self._stats.queued += len(waits)
        self._stats.queue_ns += int(sum(waits) * 1e9)
        self._stats.last_run_ms = int(time.time() * 1000)

    def _observe(self, size: int, waits: list[float], started: float, failed: bool) -> None:
        observer = self.observer
        if observer is not None:
            try:
                observer.batch_done(size, waits, time.monotonic() - started, failed)
            except Exception:  # metrics must never fail a batch
                log.exception("model %s: the batch observer failed", self.name)


def _fail(future: Future, error: BaseException) -> None:
    with contextlib.suppress(InvalidStateError):  # completed by another thread first
        future.set_exception(error)
