"""grpc.health.v1 statuses kept in step with the repository.

"" (the server): SERVING once the start-up load has finished, NOT_SERVING before and while draining.
"crossmodal.v1.CrossModal": SERVING when the default pipeline can serve.
One name per pipeline (SERVING when both towers share a ready version) and per model (a ready version).
"""

from __future__ import annotations

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from server.pipelines.clip import pipeline_ready
from server.repository.repository import ModelRepository, State

SERVICE_NAME = "crossmodal.v1.CrossModal"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthReporter:
    def __init__(self, repository: ModelRepository, default_pipeline: str) -> None:
        self.servicer = health_aio.HealthServicer()
        self._repository = repository
        self._default_pipeline = default_pipeline
        self._known: set[str] = set()
        self._started = False
        self._draining = False

    @property
    def serving(self) -> bool:
        """The server's own readiness: start-up load finished and not draining."""
        return self._started and not self._draining

    async def starting(self) -> None:
        await self.servicer.set("", NOT_SERVING)
        await self.servicer.set(SERVICE_NAME, NOT_SERVING)

    async def started(self) -> None:
        self._started = True
        await self.refresh()

    async def refresh(self) -> None:
        statuses = self.statuses()
        for name in self._known - set(statuses):
            await self.servicer.set(name, NOT_SERVING)  # a model that left the repository
        for name, serving in statuses.items():
            await self.servicer.set(name, SERVING if serving else NOT_SERVING)
        self._known = set(statuses) - {"", SERVICE_NAME}

    def statuses(self) -> dict[str, bool]:
        repository = self._repository
        result = {name: pipeline_ready(repository, name) for name in repository.pipelines()}
        for status in repository.index():
            result[status.name] = result.get(status.name, False) or status.state is State.READY
        result[""] = self._started
        result[SERVICE_NAME] = self._started and result.get(self._default_pipeline, False)
        return result

    async def drain(self) -> None:
        """Every name NOT_SERVING, for good: the server is going away."""
        self._draining = True
        await self.servicer.enter_graceful_shutdown()
