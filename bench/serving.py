"""The server under test: a subprocess for the load tests, or its parts loaded in this process."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench.measure import LoadResult, closed_loop
from bench.settings import BenchSettings
from tools.local_server import free_port, running_server


@contextmanager
def serving(repository: Path, extra_args: Sequence[str] = (), ready_timeout: float = 600.0) -> Iterator[str]:
    """Yields the address of a server over `repository`; real-size models take a while to load and warm."""
    port = free_port()
    log_path = Path(tempfile.gettempdir()) / f"crossmodal-bench-server-{port}.log"
    with running_server(
        repository, "127.0.0.1", port, *extra_args, log_path=log_path, ready_timeout=ready_timeout
    ) as (address, _process):
        yield address


def close_in_process(*parts: object) -> None:
    """Stops an in-process engine and repository (their models may run batcher threads); parts without
    a close() have nothing running."""
    for part in parts:
        close = getattr(part, "close", None)
        if close is not None:
            close()


def encode_load(
    address: str,
    settings: BenchSettings,
    items_of_call: Callable[[int], list],
    items_per_call: int,
    what: str,
    say: Callable[[str], None],
) -> LoadResult:
    """`settings.concurrency` callers sending Encode(items_of_call(i)) for the measured window."""
    from crossmodal import AsyncCrossModalClient

    async def load() -> LoadResult:
        async with AsyncCrossModalClient(address, timeout=120) as client:
            return await closed_loop(
                lambda i: client.encode(items_of_call(i)),
                items_per_call=items_per_call,
                concurrency=settings.concurrency,
                seconds=settings.serve_seconds,
                warmup_seconds=settings.serve_warmup_seconds,
            )

    say(
        f"server: {settings.concurrency} concurrent Encode({items_per_call} {what}) for "
        f"{settings.serve_seconds:.0f}s after {settings.serve_warmup_seconds:g}s warm-up"
    )
    result = asyncio.run(load())
    say(f"server: {result.items_per_s:.1f} {what}/s (p50 {result.latency_ms['p50']:.0f} ms per request)")
    return result
