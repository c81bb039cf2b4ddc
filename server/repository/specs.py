"""config.pbtxt as typed, frozen specs, parsed once when a model folder is (re)loaded.

Everything past this module reads a ModelSpec or a PipelineSpec; the parsed proto is kept only so that
KServe's ModelConfig can show the config as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from crossmodal.v1 import model_config_pb2 as mc
from server.batching.settings import DEFAULT_MAX_QUEUE_ITEMS, BatchSettings, DynamicBatching
from server.core.errors import ModelLoadError
from server.pipelines.kinds import DEFAULT_KIND, KIND_PARAMETER, PipelineKind
from server.repository.model_config import is_pipeline, platform_of

KIND_GPU, KIND_CPU, KIND_MODEL = "KIND_GPU", "KIND_CPU", "KIND_MODEL"  # others (KIND_AUTO): GPU if it can


@dataclass(frozen=True)
class DeviceSpec:
    """Where the model runs: the first instance_group's kind and GPUs (no group: the CPU)."""

    kind: str = KIND_CPU
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class VersionPolicy:
    """Triton's version_policy: the newest `latest` versions, all of them, or the `specific` ones."""

    choice: str = "latest"  # latest | all | specific
    latest: int = 1
    specific: tuple[int, ...] = ()

    @classmethod
    def from_proto(cls, policy: mc.ModelVersionPolicy) -> VersionPolicy:
        choice = policy.WhichOneof("policy_choice")
        if choice == "all":
            return cls("all")
        if choice == "specific":
            return cls("specific", specific=tuple(policy.specific.versions))
        return cls("latest", latest=policy.latest.num_versions if choice == "latest" else 1)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    platform: str  # onnxruntime_onnx also when the config names only the onnxruntime backend
    backend: str
    max_batch_size: int  # 0: the backend's default
    default_model_filename: str  # "" = the backend's default
    instance_count: int  # batch workers (and ONNX sessions' share of the cores)
    device: DeviceSpec
    batching: DynamicBatching | None  # None: no dynamic_batching, each run serves one request
    version_policy: VersionPolicy
    parameters: Mapping[str, str]  # `parameters`, without the entries left empty
    proto: mc.ModelConfig = field(compare=False, repr=False)
    response_cache: bool = False  # response_cache { enable: true }

    def batch_settings(
        self, default_max_batch_size: int, max_queue_items: int = DEFAULT_MAX_QUEUE_ITEMS
    ) -> BatchSettings:
        try:
            return BatchSettings.for_model(
                self.max_batch_size or default_max_batch_size,
                self.batching,
                self.instance_count,
                max_queue_items,
            )
        except ValueError as error:
            raise ModelLoadError(f"model '{self.name}': bad batching settings: {error}") from error


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    kind: str
    parameters: Mapping[str, str]
    parts: Mapping[str, str]  # role -> model name, for the roles the config names
    same_version: tuple[str, ...]  # models that serve together only at a version they all hold
    any_version: tuple[str, ...]  # models used at their newest ready version
    missing: tuple[str, ...]  # parameters of required roles the config leaves out
    proto: mc.ModelConfig = field(compare=False, repr=False)

    @property
    def complete(self) -> bool:
        return not self.missing


def parameters_of(config: mc.ModelConfig) -> Mapping[str, str]:
    """`parameters` as strings; an empty value counts as absent, as Triton's backends read them."""
    return MappingProxyType({k: v.string_value for k, v in config.parameters.items() if v.string_value != ""})


def instance_count(config: mc.ModelConfig) -> int:
    """Instances over every instance_group (a group without a count is one), at least one."""
    return sum(group.count or 1 for group in config.instance_group) or 1


def model_spec(config: mc.ModelConfig) -> ModelSpec:
    device = DeviceSpec()
    if config.instance_group:
        group = config.instance_group[0]
        device = DeviceSpec(mc.ModelInstanceGroup.Kind.Name(group.kind), tuple(group.gpus))
    batching = None
    if config.HasField("dynamic_batching"):
        dynamic = config.dynamic_batching
        batching = DynamicBatching(
            preferred_batch_sizes=tuple(sorted(set(dynamic.preferred_batch_size))),
            max_queue_delay_s=dynamic.max_queue_delay_microseconds / 1e6,
            max_queue_size=dynamic.default_queue_policy.max_queue_size,
        )
    return ModelSpec(
        name=config.name,
        platform=platform_of(config),
        backend=config.backend,
        max_batch_size=config.max_batch_size,
        default_model_filename=config.default_model_filename,
        instance_count=instance_count(config),
        device=device,
        batching=batching,
        version_policy=VersionPolicy.from_proto(config.version_policy),
        parameters=parameters_of(config),
        proto=config,
        response_cache=config.response_cache.enable,
    )


def pipeline_spec(config: mc.ModelConfig, kinds: Mapping[str, PipelineKind]) -> PipelineSpec:
    """The parts a pipeline config names, by role of its kind; a missing required part is recorded (the
    pipeline then serves nothing until its config names it), an unknown kind refused."""
    parameters = parameters_of(config)
    kind_name = parameters.get(KIND_PARAMETER, DEFAULT_KIND)
    kind = kinds.get(kind_name)
    if kind is None:
        raise ModelLoadError(
            f"pipeline '{config.name}': unknown {KIND_PARAMETER} '{kind_name}' (known: {sorted(kinds)})"
        )
    parts = {role.name: parameters[role.parameter] for role in kind.roles if role.parameter in parameters}
    return PipelineSpec(
        name=config.name,
        kind=kind.name,
        parameters=parameters,
        parts=MappingProxyType(parts),
        same_version=tuple(parts[r.name] for r in kind.roles if r.same_version and r.name in parts),
        any_version=tuple(parts[r.name] for r in kind.roles if not r.same_version and r.name in parts),
        missing=tuple(r.parameter for r in kind.roles if r.required and r.name not in parts),
        proto=config,
    )


def spec_of(config: mc.ModelConfig, kinds: Mapping[str, PipelineKind]) -> ModelSpec | PipelineSpec:
    return pipeline_spec(config, kinds) if is_pipeline(config) else model_spec(config)
