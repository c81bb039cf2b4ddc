"""Open-loop arrival times: a Poisson process, i.e. exponential gaps between sends, from a seeded RNG."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

_CHUNK = 1024


def poisson_arrivals(rate: float, seed: int) -> Iterator[float]:
    """Endless, strictly increasing send times in seconds after the start, `rate` per second on average.

    Independent exponential gaps make arrivals memoryless, like many independent users; a fixed gap would
    hide the queueing that bursts cause.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, not {rate}")
    rng = np.random.default_rng(seed)
    now = 0.0
    while True:
        for gap in rng.exponential(1.0 / rate, _CHUNK):
            # A zero gap is possible in floating point; nudging it keeps the times strictly increasing.
            now += max(float(gap), 1e-9)
            yield now
