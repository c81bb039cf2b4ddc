"""Server lifecycle: load and warm the repository, serve gRPC, stop gracefully."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import grpc

from crossmodal.v1 import crossmodal_pb2_grpc as pb_grpc
from server.config import ServerConfig
from server.engine import Engine
from server.repository.repository import ModelRepository, State
from server.runtime.session import SessionFactory
from server.service.crossmodal_service import CrossModalService

log = logging.getLogger(__name__)


class CrossModalServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.repository = ModelRepository(
            config.model_repository, SessionFactory(strict_gpu=config.strict_gpu)
        )
        self.engine = Engine(self.repository, config.limits, config.default_pipeline)
        self._executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="infer")
        self._server: grpc.aio.Server | None = None
        self.port: int | None = None

    def load_models(self) -> None:
        log.info("loading model repository %s", self.config.model_repository)
        self.repository.load_all()
        statuses = self.repository.index()
        ready = [s for s in statuses if s.state is State.READY]
        log.info("%d model version(s) ready, %d unavailable", len(ready), len(statuses) - len(ready))

    async def start(self) -> int:
        limits = self.config.limits
        options = [
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", limits.max_message_bytes),
        ]
        self._server = grpc.aio.server(options=options)
        pb_grpc.add_CrossModalServicer_to_server(CrossModalService(self.engine, self._executor), self._server)
        address = f"{self.config.host}:{self.config.port}"
        self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        await self._server.start()
        log.info("serving crossmodal.v1.CrossModal on %s:%d", self.config.host, self.port)
        return self.port

    async def wait(self) -> None:
        await self._server.wait_for_termination()

    async def stop(self) -> None:
        if self._server is not None:
            log.info("stopping: finishing in-flight requests (grace %.1fs)", self.config.grace_seconds)
            await self._server.stop(self.config.grace_seconds)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.engine.close()
        self.repository.close()
        log.info("stopped")
