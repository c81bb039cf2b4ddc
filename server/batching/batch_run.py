"""The cancellation token of one batch run, which serves items of several calls at once.

A run must not stop because one of its callers left: the others still want their outputs. So the run's
token is cancelled only when every call with items in it has gone (its future completed before the run
did: withdrawn, or failed by another run). Until then a long run (beam search) may ask which of its
items nobody waits for any more and drop them at its next step.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future

from server.core.cancellation import CancelToken, current_token


class BatchRun(CancelToken):
    def __init__(self, futures: Sequence[Future], counts: Sequence[int]) -> None:
        """`futures[i]` is the call owning the next `counts[i]` items of the run, in order."""
        super().__init__()
        self._state = threading.Lock()
        self._spans: list[range] = []
        start = 0
        for count in counts:
            self._spans.append(range(start, start + count))
            start += count
        self._gone: set[int] = set()  # indices of calls that left
        self._closed = False
        for index, future in enumerate(futures):
            future.add_done_callback(lambda _, index=index: self._call_gone(index))

    def close(self) -> None:
        """The run has ended: futures it completes itself from now on are no departures."""
        with self._state:
            self._closed = True

    def abandoned_items(self) -> set[int]:
        """Positions (in the run's items) of the items whose call has gone."""
        with self._state:
            return {item for index in self._gone for item in self._spans[index]}

    def _call_gone(self, index: int) -> None:
        with self._state:
            if self._closed:
                return
            self._gone.add(index)
            everyone_left = len(self._gone) == len(self._spans)
        if everyone_left:
            self.cancel()


def abandoned_items() -> set[int]:
    """In a batch function: positions of its items whose call has gone (empty outside a batch run)."""
    token = current_token()
    return token.abandoned_items() if isinstance(token, BatchRun) else set()
