"""Model control modes: what the server loads at start, and how the repository changes afterwards."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from server.core.config import ModelControl
from server.core.errors import ModelNotFound, NotAllowed
from server.repository.repository import ModelRepository, VersionStatus

log = logging.getLogger(__name__)


class ModelController:
    def __init__(
        self,
        repository: ModelRepository,
        mode: ModelControl,
        poll_seconds: float,
        load_at_start: tuple[str, ...],
        on_change: Callable[[], Awaitable[None]],
    ) -> None:
        self.repository = repository
        self.mode = mode
        self.poll_seconds = poll_seconds
        self.load_at_start = load_at_start
        self._on_change = on_change

    def initial_load(self) -> None:
        """Blocking: none/poll load the whole repository; explicit loads what --load-model names."""
        if self.mode is not ModelControl.EXPLICIT or "*" in self.load_at_start:
            self.repository.load_all()
            return
        for name in self.load_at_start:
            try:
                self.repository.load_model(name)
            except ModelNotFound as error:
                log.error("--load-model %s: %s", name, error)

    async def poll_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                changed = await loop.run_in_executor(None, self.repository.poll)
            except Exception:  # a poll that fails must not end polling; the next one retries
                log.exception("repository poll failed")
                continue
            if changed:
                log.info("repository changed: %s", ", ".join(changed))
                await self._on_change()

    async def load(self, name: str) -> list[VersionStatus]:
        self._check_explicit("LoadModel")
        statuses = await asyncio.get_running_loop().run_in_executor(None, self.repository.load_model, name)
        await self._on_change()
        return statuses

    async def unload(self, name: str) -> None:
        self._check_explicit("UnloadModel")
        await asyncio.get_running_loop().run_in_executor(None, self.repository.unload_model, name)
        await self._on_change()

    def _check_explicit(self, what: str) -> None:
        if self.mode is not ModelControl.EXPLICIT:
            raise NotAllowed(
                f"{what} needs --model-control-mode explicit; this server runs in '{self.mode.value}' mode"
            )
