"""Server lifecycle: listen, load and warm the repository, serve gRPC, drain and stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from crossmodal.v1 import crossmodal_pb2 as pb
from crossmodal.v1 import crossmodal_pb2_grpc as pb_grpc
from inference import grpc_service_pb2 as kpb
from inference import grpc_service_pb2_grpc as kpb_grpc
from server.backends.onnx.session import SessionFactory
from server.core.cache import ResponseCache
from server.core.cancellation import calls_on
from server.core.config import ModelControl, ServerConfig
from server.core.errors import StartupError
from server.engine import Engine
from server.images.allocator import return_large_frees_to_the_system
from server.memory_budget import MemoryBudget
from server.metrics import ServerMetrics
from server.pipelines import segmentation
from server.port_check import ensure_port_free
from server.protocols.common import CallRunner
from server.protocols.grpc_v1.response_size import SEND_LIMIT_FACTOR
from server.protocols.grpc_v1.service import CrossModalService
from server.protocols.health import HealthReporter
from server.protocols.interceptors.request_decoding import UndecodableRequestInterceptor
from server.protocols.interceptors.security import BearerTokenInterceptor, server_credentials
from server.protocols.kserve.service import InferenceService
from server.repository.control import ModelController
from server.repository.repository import ModelRepository, State
from server.retrieval.retrieval import Retrieval
from server.retrieval.store import VectorStore

log = logging.getLogger(__name__)

# After the grace period: how long cancelled calls get to stop at their next check, and then how long
# closing the models may take, before the server stops without waiting for them.
GRPC_STOP_DELAY_SECONDS = 0.5  # gRPC cancels what is left this much later, after the cut-off
STOP_MARGIN_SECONDS = 3.0


class CrossModalServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = ServerMetrics()
        self.response_cache = ResponseCache(config.cache_bytes)
        self.metrics.watch_response_cache(self.response_cache)
        self.repository = ModelRepository(
            config.model_repository,
            SessionFactory(strict_gpu=config.strict_gpu),
            batch_observer=self.metrics.batch_observer,
            max_queue_items=config.max_queue_items,
            response_cache=self.response_cache,
        )
        self.metrics.watch_models(
            lambda: [(s.name, s.version, s.state.value) for s in self.repository.index()]
        )
        return_large_frees_to_the_system()
        # One server-wide budget for decoded images and request bodies: memory, not worker count, bounds them.
        self.memory_budget = MemoryBudget(
            config.max_decode_memory, config.max_decode_waiting, config.decode_wait_seconds
        )
        budget = self.memory_budget
        self.metrics.watch_memory_budget(lambda: budget.used, budget.limit, lambda: budget.waiting)
        # The worker threads of every call's CPU stages; calls register on it, so stopping finds them.
        self._executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="call")
        self.engine = Engine(
            self.repository,
            config.limits,
            config.default_pipeline,
            memory_budget=self.memory_budget,
            executor=self._executor,
        )
        self.retrieval = Retrieval(
            self.engine, lambda: VectorStore(config.vector_store_uri, config.milvus_token)
        )
        self.health = HealthReporter(self.repository, config.default_pipeline)
        self.controller = ModelController(
            self.repository,
            config.model_control,
            config.poll_seconds,
            config.load_models,
            self.health.refresh,
        )
        self._server: grpc.aio.Server | None = None
        self._metrics_http = None
        self._polling: asyncio.Task | None = None
        self.port: int | None = None
        self.metrics_port: int | None = None

    def load_models(self) -> None:
        """Blocking start-up load (run it off the event loop); calls are refused until it ends."""
        log.info(
            "loading model repository %s (%s mode)", self.config.model_repository, self.config.model_control
        )
        segmentation.initialise()  # the first Chinese call is then as fast as the next ones
        self.controller.initial_load()
        statuses = self.repository.index()
        ready = [s for s in statuses if s.state is State.READY]
        log.info("%d model version(s) ready, %d unavailable", len(ready), len(statuses) - len(ready))

    async def start(self) -> int:
        """Listens and serves health (NOT_SERVING) and refusals while loading; then serves for real."""
        self.engine.accepting = False
        await self._listen()
        await asyncio.get_running_loop().run_in_executor(None, self.load_models)
        self.engine.accepting = True
        await self.health.started()
        if self.config.model_control is ModelControl.POLL:
            self._polling = asyncio.create_task(self.controller.poll_forever())
        log.info("ready: serving crossmodal.v1.CrossModal on %s:%d", self.config.host, self.port)
        return self.port

    async def _listen(self) -> None:
        config, limits = self.config, self.config.limits
        address = f"{config.host}:{config.port}"
        # Every port and file is checked before anything binds: a problem is one StartupError naming it.
        ensure_port_free(config.host, config.port, "gRPC (--port)")
        if config.metrics_port:
            ensure_port_free(config.host, config.metrics_port, "metrics (--metrics-port)")
        credentials = server_credentials(config.tls) if config.tls else None
        options = [
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            # Responses too large to send are refused before their work (protocols/grpc_v1/response_size.py);
            # the rest of a response (translations) cannot be known in advance, so the send limit has room.
            ("grpc.max_send_message_length", min(SEND_LIMIT_FACTOR * limits.max_message_bytes, 2**31 - 1)),
            ("grpc.so_reuseport", 0),  # a second server on this port fails instead of sharing it
        ]
        interceptors = [BearerTokenInterceptor(config.auth_token)] if config.auth_token else []
        # After the token check; large bodies are held in the server's memory budget.
        interceptors.append(UndecodableRequestInterceptor(self.metrics, self.memory_budget))
        self._server = grpc.aio.server(
            options=options,
            interceptors=interceptors,
            maximum_concurrent_rpcs=config.max_concurrent_calls,  # beyond: RESOURCE_EXHAUSTED at once
        )
        runner = CallRunner(self._executor, self.metrics)
        service = CrossModalService(self.engine, runner, self.controller, self.retrieval)
        pb_grpc.add_CrossModalServicer_to_server(service, self._server)
        inference_service = InferenceService(
            self.engine, runner, self.controller, lambda: self.health.serving
        )
        kpb_grpc.add_GRPCInferenceServiceServicer_to_server(inference_service, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, self._server)
        reflection.enable_server_reflection(
            [
                pb.DESCRIPTOR.services_by_name["CrossModal"].full_name,
                kpb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self._server,
        )
        try:
            if credentials is not None:
                self.port = self._server.add_secure_port(address, credentials)
            else:
                self.port = self._server.add_insecure_port(address)
        except RuntimeError as error:  # taken between the check and the bind
            raise StartupError(f"cannot listen for gRPC (--port) on {address}: {error}") from error
        if self.port == 0:
            raise StartupError(f"cannot listen for gRPC (--port) on {address}")
        if config.metrics_port:  # metrics serve from the start, also during the model load
            self._metrics_http = self.metrics.serve(config.host, config.metrics_port)
            self.metrics_port = self._metrics_http.server_port
        await self.health.starting()
        await self._server.start()
        security = "TLS" + (" + client certificates" if config.tls and config.tls.client_ca else "")
        log.info(
            "listening on %s:%d (%s%s); loading models",
            config.host,
            self.port,
            security if config.tls else "plaintext",
            ", bearer token required" if config.auth_token else "",
        )

    async def stop(self) -> bool:
        """Health NOT_SERVING, new calls refused, in-flight calls finish within the grace period; calls
        still running then are cancelled and get STOP_MARGIN_SECONDS to stop at their next check, and
        closing the models gets as long. Returns False when something was still busy after that: the
        process should then exit without waiting for those threads."""
        await self.health.drain()
        loop = asyncio.get_running_loop()
        if self._polling is not None:
            self._polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._polling
        if self._server is not None:
            grace = self.config.grace_seconds
            log.info("draining: finishing in-flight calls (grace %.1fs)", grace)
            # The calls still running when the grace ends are cut off (and named) here, through their
            # tokens; gRPC's own cancellation comes a moment later, so it never races the cut-off.
            stopping = asyncio.ensure_future(self._server.stop(grace + GRPC_STOP_DELAY_SECONDS))
            await asyncio.wait({stopping}, timeout=grace)
            quiet = await loop.run_in_executor(None, self._cut_off_calls)
            await stopping
        else:
            quiet = await loop.run_in_executor(None, self._cut_off_calls)
        closing = loop.run_in_executor(None, self._close_parts, quiet)
        try:
            await asyncio.wait_for(asyncio.shield(closing), STOP_MARGIN_SECONDS)
        except TimeoutError:
            log.warning("closing the models took over %.1fs; exiting without waiting", STOP_MARGIN_SECONDS)
            quiet = False
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
        log.info("stopped")
        return quiet

    def _cut_off_calls(self) -> bool:
        """Cancels the calls still running after the grace period; True when all have stopped in time."""
        calls = calls_on(self._executor)
        cut_off = calls.cancel_all()
        if not cut_off:
            return True
        log.warning(
            "grace period over: cancelled %d call(s) still running: %s",
            len(cut_off),
            ", ".join(f"{what} x{n}" for what, n in Counter(cut_off).most_common()),
        )
        if calls.wait_idle(STOP_MARGIN_SECONDS):
            return True
        still = calls.running()
        log.warning(
            "%d call(s) still running %.1fs after cancellation (%s); not waiting for them",
            len(still),
            STOP_MARGIN_SECONDS,
            ", ".join(sorted(set(still))),
        )
        return False

    def _close_parts(self, quiet: bool) -> None:
        self._executor.shutdown(wait=quiet, cancel_futures=True)
        self.engine.close()
        self.retrieval.close()
        self.repository.close()
