"""inference.GRPCInferenceService (KServe v2 / Triton protocol): a thin adapter over the engine, the
repository and the model controller shared with crossmodal.v1."""

from __future__ import annotations

from collections.abc import Callable

from inference import grpc_service_pb2 as kpb
from inference import grpc_service_pb2_grpc as kpb_grpc
from server import __version__
from server.core.errors import InvalidInput, ModelNotFound, ModelNotReady
from server.engine import Engine
from server.pipelines.clip import pipeline_ready, pipeline_versions
from server.pipelines.served import served_entries
from server.protocols.common import CallRunner
from server.protocols.grpc_status import grpc_handler
from server.protocols.kserve import models as exposed_models
from server.protocols.kserve.signatures import config_with_tensors, metadata_tensors
from server.protocols.kserve.statistics import model_statistics
from server.protocols.kserve.tensors import decode_inputs, raw_contents
from server.repository.control import ModelController
from server.repository.repository import State
from server.repository.versions import VERSION_FOLDER

# What this server really offers of the protocol's extensions.
EXTENSIONS = ["model_repository", "model_configuration", "statistics"]


def version_number(text: str) -> int:
    """Protocol versions are strings; "" means the newest ready one (0 here)."""
    if not text:
        return 0
    if not VERSION_FOLDER.fullmatch(text):
        raise InvalidInput(f"model version must be a positive integer, got {text!r}")
    return int(text)


def parameter_values(parameters) -> dict[str, object]:
    values = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice else None
    return values


def refuse_load_overrides(model: str, parameters) -> None:
    """Triton's `config` (a config.pbtxt in JSON) and `file:<path>` (model files in the request) override
    what the repository holds. The repository on disk is the only source here: answering OK while
    ignoring them would load something other than what the caller sent."""
    overrides = sorted(key for key in parameters if key == "config" or key.startswith("file:"))
    if overrides:
        raise InvalidInput(
            f"RepositoryModelLoad of '{model}': parameters {overrides} are not supported (config and "
            f"file overrides); put the config.pbtxt and model files in the repository folder instead"
        )


class InferenceService(kpb_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        engine: Engine,
        runner: CallRunner,
        controller: ModelController,
        ready: Callable[[], bool],
    ) -> None:
        self._engine = engine
        self._repository = engine.repository
        self._runner = runner
        self._controller = controller
        self._ready = ready

    @grpc_handler
    async def ServerLive(self, request, context) -> kpb.ServerLiveResponse:
        return kpb.ServerLiveResponse(live=True)

    @grpc_handler
    async def ServerReady(self, request, context) -> kpb.ServerReadyResponse:
        return kpb.ServerReadyResponse(ready=self._ready())

    @grpc_handler
    async def ModelReady(self, request, context) -> kpb.ModelReadyResponse:
        return kpb.ModelReadyResponse(ready=self._model_ready(request.name, version_number(request.version)))

    @grpc_handler
    async def ServerMetadata(self, request, context) -> kpb.ServerMetadataResponse:
        return kpb.ServerMetadataResponse(name="crossmodal", version=__version__, extensions=EXTENSIONS)

    @grpc_handler
    async def ModelMetadata(self, request, context) -> kpb.ModelMetadataResponse:
        described = await self._runner.call(
            exposed_models.describe, self._engine, request.name, version_number(request.version)
        )
        return kpb.ModelMetadataResponse(
            name=described.name,
            versions=[str(v) for v in self._versions(request.name)],
            platform=described.platform,
            inputs=metadata_tensors(described.signature.inputs),
            outputs=metadata_tensors(described.signature.outputs),
        )

    @grpc_handler
    async def ModelConfig(self, request, context) -> kpb.ModelConfigResponse:
        version = version_number(request.version)
        described = await self._runner.call(exposed_models.describe, self._engine, request.name, version)
        if self._repository.is_pipeline(request.name):
            source = self._repository.pipeline_spec(request.name).proto
        else:
            source = self._repository.model_spec(request.name, version).proto
        return kpb.ModelConfigResponse(config=config_with_tensors(source, described.signature))

    @grpc_handler
    async def ModelInfer(self, request, context) -> kpb.ModelInferResponse:
        version, outputs = await self._runner.call(
            self._infer, request, version_number(request.model_version)
        )
        wanted = [o.name for o in request.outputs]
        unknown = sorted(set(wanted) - {t.name for t in outputs})
        if unknown:
            raise InvalidInput(f"model '{request.model_name}' has no output {unknown}")
        chosen = [t for t in outputs if not wanted or t.name in wanted]
        return kpb.ModelInferResponse(
            model_name=request.model_name,
            model_version=str(version),
            id=request.id,
            outputs=[
                kpb.ModelInferResponse.InferOutputTensor(name=t.name, datatype=t.datatype, shape=t.shape)
                for t in chosen
            ],
            raw_output_contents=[raw_contents(t) for t in chosen],
        )

    @grpc_handler
    async def ModelStatistics(self, request, context) -> kpb.ModelStatisticsResponse:
        version = version_number(request.version)
        statuses = [
            s
            for s in self._repository.index()
            if s.state is State.READY
            and (not request.name or s.name == request.name)
            and (not version or s.version == version)
        ]
        if request.name and not statuses:
            raise ModelNotFound(
                f"no ready model '{request.name}'" + (f" version {version}" if version else "")
            )
        return kpb.ModelStatisticsResponse(
            model_stats=[model_statistics(s.name, s.version, s.model.batcher.stats()) for s in statuses]
        )

    @grpc_handler
    async def RepositoryIndex(self, request, context) -> kpb.RepositoryIndexResponse:
        entries = served_entries(self._repository)
        if request.ready:
            entries = [e for e in entries if e.state == "READY"]
        return kpb.RepositoryIndexResponse(
            models=[
                kpb.RepositoryIndexResponse.ModelIndex(
                    name=e.name, version=str(e.version) if e.version else "", state=e.state, reason=e.reason
                )
                for e in entries
            ]
        )

    @grpc_handler
    async def RepositoryModelLoad(self, request, context) -> kpb.RepositoryModelLoadResponse:
        refuse_load_overrides(request.model_name, request.parameters)
        statuses = await self._controller.load(request.model_name)
        failed = [s for s in statuses if s.state is State.UNAVAILABLE]
        if statuses and len(failed) == len(statuses):
            raise ModelNotReady(f"model '{request.model_name}' failed to load: {failed[0].reason}")
        return kpb.RepositoryModelLoadResponse()

    @grpc_handler
    async def RepositoryModelUnload(self, request, context) -> kpb.RepositoryModelUnloadResponse:
        await self._controller.unload(request.model_name)
        return kpb.RepositoryModelUnloadResponse()

    async def _infer(self, request, version: int):
        # Decoding a large BYTES tensor is Python work worth a worker thread.
        inputs = await self._runner.offload(decode_inputs, request, self._engine.limits.max_items)
        parameters = parameter_values(request.parameters)
        return await exposed_models.infer(self._engine, request.model_name, version, inputs, parameters)

    def _model_ready(self, name: str, version: int) -> bool:
        if self._repository.is_pipeline(name):
            return pipeline_ready(self._repository, name)
        try:
            self._repository.model(name, version)
            return True
        except (ModelNotFound, ModelNotReady):
            return False

    def _versions(self, name: str) -> list[int]:
        if self._repository.is_pipeline(name):
            return pipeline_versions(self._repository, name)
        return self._repository.ready_versions(name)
