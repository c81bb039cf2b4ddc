"""The phases of one stage: warm-up (not measured), measurement, then stop."""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    WARMUP = "warmup"
    MEASURE = "measure"
    STOP = "stop"


class StagePhases:
    """Decides, for each request about to be sent, which phase it belongs to.

    Warm-up lasts at least `warmup_seconds` and at least `warmup_requests` requests, so the server's
    queues and caches reach the stage's steady state before anything is counted. Measurement then lasts
    `duration` seconds or `requests` requests. Times are the caller's clock (scheduled send times in the
    open loop, actual ones in the closed loop).
    """

    def __init__(
        self,
        start: float,
        warmup_seconds: float,
        warmup_requests: int,
        duration: float | None,
        requests: int | None,
    ) -> None:
        self._warmup_until = start + warmup_seconds
        self._warmup_requests = warmup_requests
        self._duration = duration
        self._requests = requests
        self._warmup_sent = 0
        self._measured_sent = 0
        self.measure_start: float | None = None

    def admit(self, now: float) -> Phase:
        """The phase of a request sent at `now`; counts it as sent unless the stage is over."""
        if self.measure_start is None:
            if now < self._warmup_until or self._warmup_sent < self._warmup_requests:
                self._warmup_sent += 1
                return Phase.WARMUP
            self.measure_start = now
        if self._duration is not None and now >= self.measure_start + self._duration:
            return Phase.STOP
        if self._requests is not None and self._measured_sent >= self._requests:
            return Phase.STOP
        self._measured_sent += 1
        return Phase.MEASURE

    @property
    def measured_sent(self) -> int:
        return self._measured_sent
