"""Work a backend has queued: the batcher's future, how to turn its outputs into the answer, how to withdraw.

A backend never waits for its own batches. It validates and queues, and hands back a Pending; whoever
needs the answer waits for it: the engine awaits it on the event loop (no thread is held while a batch
forms and runs), tools and warm-ups call result() on their own thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from server.core.cancellation import current_token

T = TypeVar("T")


def _identity(outputs: list[Any]) -> Any:
    return outputs


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Pending(Generic[T]):
    future: Future  # a list with one output per queued item, in order
    finish: Callable[[list[Any]], T] = _identity  # cheap: it may run on the event loop
    withdraw: Callable[[], None] = _nothing  # frees the queue places of items not yet run

    @classmethod
    def done(cls, value: T) -> Pending[T]:
        """An answer that needed no batch (e.g. nothing to run)."""
        future: Future = Future()
        future.set_result(value)
        return cls(future)

    def result(self) -> T:
        """Blocks this thread until the answer is there; a cancelled current call withdraws the work."""
        unregister = self._withdraw_with_current_call()
        try:
            return self.finish(self.future.result())
        finally:
            unregister()

    async def wait(self) -> T:
        """Awaits the answer on the event loop; a cancelled task, or a cancelled current call (a stopping
        server cuts it off through its token), withdraws the work still queued. An answer already there
        (e.g. from a response cache) is taken at once: awaiting a done future still costs a round through
        the event loop."""
        if self.future.done() and not self.future.cancelled():
            return self.finish(self.future.result())
        unregister = self._withdraw_with_current_call()
        try:
            outputs = await asyncio.wrap_future(self.future)
        except asyncio.CancelledError:
            self.withdraw()
            raise
        finally:
            unregister()
        return self.finish(outputs)

    def withdrawn_on_cancel(self) -> Pending[T]:
        """Ties the work to the current call's token: work queued by a worker stage whose caller stopped
        waiting meanwhile (its answer never reaches anyone) is withdrawn all the same."""
        self._withdraw_with_current_call()
        return self

    def _withdraw_with_current_call(self) -> Callable[[], None]:
        """Withdraws the work when the current call is cancelled; returns the unregister function."""
        token = current_token()
        return token.on_cancel(self.withdraw) if token is not None else _nothing

    def then(self, step: Callable[[T], Any]) -> Pending:
        """The same work, with `step` applied to its answer."""
        return Pending(self.future, lambda outputs: step(self.finish(outputs)), self.withdraw)
