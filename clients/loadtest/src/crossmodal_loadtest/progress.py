"""A progress bar per stage (tqdm on stderr), refreshed a few times a second at most."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from crossmodal_loadtest.phases import Phase

_REFRESH_SECONDS = 0.2


class StageProgress:
    """Shows measured time (duration-bounded stages) or measured requests (count-bounded ones),
    with the count of completed and failed requests."""

    def __init__(self, label: str, duration: float | None, requests: int | None, enabled: bool) -> None:
        self._label = label
        self._by_requests = requests is not None
        self._bar = tqdm(
            total=requests if self._by_requests else duration,
            desc=f"{label} warm-up",
            unit="req" if self._by_requests else "s",
            bar_format=None
            if self._by_requests
            else "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:g}s{postfix}",
            disable=not enabled,
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        self._completed = 0
        self._failed = 0
        self._last_refresh = 0.0

    def completed(self, phase: Phase, failed: bool, measure_start: float | None) -> None:
        if self._bar.disable:
            return
        if phase is Phase.MEASURE:
            self._completed += 1
            self._failed += failed
        now = time.perf_counter()
        if now - self._last_refresh < _REFRESH_SECONDS:
            return
        self._last_refresh = now
        if measure_start is not None:
            self._bar.set_description_str(self._label, refresh=False)
            self._bar.n = self._completed if self._by_requests else min(now - measure_start, self._bar.total)
        self._bar.set_postfix_str(f"done={self._completed} failed={self._failed}", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()
