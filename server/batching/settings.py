"""How one model's batcher forms batches, from its spec's `max_batch_size`, `dynamic_batching` and
instance count (server/repository/specs.py parses config.pbtxt); the batcher only sees the frozen settings."""

from __future__ import annotations

from dataclasses import dataclass

# Triton's max_queue_size 0 means "unbounded"; an inference server that grows memory under overload is
# worse than one that says RESOURCE_EXHAUSTED, so 0 gets a bound (in queued items): --max-queue-items.
DEFAULT_MAX_QUEUE_ITEMS = 4096


@dataclass(frozen=True)
class DynamicBatching:
    """config.pbtxt `dynamic_batching`, as written."""

    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_s: float = 0.0
    max_queue_size: int = 0  # 0: the server's bound (--max-queue-items)


@dataclass(frozen=True)
class BatchSettings:
    max_batch_size: int  # items per model run
    join_requests: bool = True  # False: each run holds items of one request only (no dynamic_batching)
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_s: float = 0.0  # how long the oldest item may wait for a fuller batch
    max_queue_items: int = DEFAULT_MAX_QUEUE_ITEMS
    workers: int = 1  # threads that run batches of this model concurrently (instance_group count)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size}")
        if self.max_queue_delay_s < 0:
            raise ValueError(f"max_queue_delay must not be negative, got {self.max_queue_delay_s}")
        if self.max_queue_items < 1:
            raise ValueError(f"max queue size must be at least 1, got {self.max_queue_items}")
        if self.workers < 1:
            raise ValueError(f"instance count must be at least 1, got {self.workers}")
        for size in self.preferred_batch_sizes:
            if not 1 <= size <= self.max_batch_size:
                raise ValueError(
                    f"preferred_batch_size {size} is outside 1..max_batch_size ({self.max_batch_size})"
                )

    @property
    def target_batch_size(self) -> int:
        """The batch size worth waiting for: the largest preferred size, else a full batch."""
        return max(self.preferred_batch_sizes, default=self.max_batch_size)

    def cut(self, available: int) -> int:
        """How many of `available` items the next run takes: at most a full batch, and a preferred size
        when one fits (the rest runs next), as Triton's dynamic batcher does."""
        size = min(available, self.max_batch_size)
        fitting = [p for p in self.preferred_batch_sizes if p <= size]
        return max(fitting) if fitting else size

    @classmethod
    def for_model(
        cls,
        max_batch_size: int,
        batching: DynamicBatching | None,
        workers: int,
        max_queue_items: int = DEFAULT_MAX_QUEUE_ITEMS,
    ) -> BatchSettings:
        """Raises ValueError for settings that cannot work."""
        if batching is None:
            return cls(max_batch_size, join_requests=False, max_queue_items=max_queue_items, workers=workers)
        return cls(
            max_batch_size=max_batch_size,
            preferred_batch_sizes=batching.preferred_batch_sizes,
            max_queue_delay_s=batching.max_queue_delay_s,
            max_queue_items=batching.max_queue_size or max_queue_items,
            workers=workers,
        )
