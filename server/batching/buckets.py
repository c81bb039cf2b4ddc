"""Length buckets: which sequences of a batch run together, each run padded to its own longest.

Padding everything to the longest wastes work on short texts; one run per length wastes the fixed cost
of a run. The split minimising padded tokens + a fixed cost per run is found exactly (lengths sorted,
dynamic programming over cut points; batches are small).
"""

from __future__ import annotations

from collections.abc import Sequence

RUN_COST_TOKENS = 96  # a model run's fixed cost, in padded tokens; measured on CLIP text on CPU


def length_buckets(lengths: Sequence[int], run_cost: int = RUN_COST_TOKENS) -> list[list[int]]:
    """Indices into `lengths`, grouped; each group is sorted by length and the groups by their lengths."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    count = len(order)
    best = [0.0] + [float("inf")] * count  # best[j]: cheapest split of order[:j]
    cut = [0] * (count + 1)
    for end in range(1, count + 1):
        longest = lengths[order[end - 1]]
        for start in range(end):
            cost = best[start] + run_cost + (end - start) * longest
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], count
    while end > 0:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]
