"""Response caches: answers a model version already computed (a text's embedding, a text's translations).

One byte-bounded LRU serves every model whose config.pbtxt says `response_cache { enable: true }`; each
loaded version gets its own view (`VersionCache`), whose entries go when that load closes, so a version
reloaded from changed files never answers with the previous weights' results. Values are kept immutable:
callers get copies or read-only arrays.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from server.core.pending import Pending

V = TypeVar("V")

# What a dict entry, its key tuple and the bookkeeping cost beside the value itself (measured order).
ENTRY_OVERHEAD_BYTES = 240


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class ResponseCache:
    """Thread-safe LRU over (load, key) entries, bounded by the bytes they are estimated to hold."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"cache capacity must be 0 (off) or more bytes, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self._entries: OrderedDict[tuple[int, Hashable], tuple[Any, int]] = OrderedDict()
        self._models: dict[int, str] = {}  # load -> model name, for the statistics
        self._stats: dict[str, CacheStats] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self._loads = itertools.count(1)

    @property
    def enabled(self) -> bool:
        return self.capacity_bytes > 0

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, CacheStats]:
        """Counters per model name (a copy)."""
        with self._lock:
            return {name: CacheStats(s.hits, s.misses, s.evictions) for name, s in self._stats.items()}

    def for_load(self, model: str) -> VersionCache:
        """A view for one load of one model version."""
        load = next(self._loads)
        with self._lock:
            self._models[load] = model
            self._stats.setdefault(model, CacheStats())
        return VersionCache(self, load)

    def _get(self, load: int, key: Hashable) -> Any | None:
        with self._lock:
            model = self._models.get(load)
            if model is None:
                return None  # the load has closed
            stats = self._stats[model]
            entry = self._entries.get((load, key))
            if entry is None:
                stats.misses += 1
                return None
            self._entries.move_to_end((load, key))
            stats.hits += 1
            return entry[0]

    def _put(self, load: int, key: Hashable, value: Any, size: int) -> None:
        size += ENTRY_OVERHEAD_BYTES
        if size > self.capacity_bytes:
            return  # larger than the whole cache: never worth evicting everything for
        with self._lock:
            if load not in self._models:
                return  # the load closed while this answer was computed
            previous = self._entries.pop((load, key), None)
            if previous is not None:
                self._bytes -= previous[1]
            self._entries[(load, key)] = (value, size)
            self._bytes += size
            while self._bytes > self.capacity_bytes:
                (old_load, _), (_, old_size) = self._entries.popitem(last=False)
                self._bytes -= old_size
                self._stats[self._models[old_load]].evictions += 1

    def _drop(self, load: int) -> None:
        with self._lock:
            if self._models.pop(load, None) is None:
                return
            for entry_key in [k for k in self._entries if k[0] == load]:
                self._bytes -= self._entries.pop(entry_key)[1]


@dataclass(frozen=True)
class VersionCache:
    cache: ResponseCache
    load: int

    def get(self, key: Hashable) -> Any | None:
        return self.cache._get(self.load, key)

    def put(self, key: Hashable, value: Any, size: int) -> None:
        self.cache._put(self.load, key, value, size)

    def clear(self) -> None:
        """Forgets this load's entries; later puts are ignored (the load has closed)."""
        self.cache._drop(self.load)


def through_cache(
    cache: VersionCache | None,
    keys: Sequence[Hashable],
    submit: Callable[[list[int]], Pending[Sequence[V]]],
    size_of: Callable[[Hashable, V], int],
) -> Pending[list[V]]:
    """One answer per key: cached ones at once, the others from `submit(indices)` (each distinct missing
    key once, even when a call repeats it), stored in the cache as they arrive."""
    if cache is None:
        return submit(list(range(len(keys)))).then(list)
    found: dict[int, V] = {}
    first_index: dict[Hashable, int] = {}
    for index, key in enumerate(keys):
        if key in first_index:
            continue
        value = cache.get(key)
        if value is None:
            first_index[key] = index
        else:
            found[index] = value
    known = {keys[i]: v for i, v in found.items()}
    if not first_index:
        return Pending.done([known[key] for key in keys])
    missing = list(first_index.values())

    def finish(answers: Sequence[V]) -> list[V]:
        for index, value in zip(missing, answers, strict=True):
            cache.put(keys[index], value, size_of(keys[index], value))
            known[keys[index]] = value
        return [known[key] for key in keys]

    return submit(missing).then(finish)
