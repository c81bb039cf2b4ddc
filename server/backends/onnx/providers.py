"""Maps a model's instance_group to ONNX Runtime execution providers.

KIND_GPU asks for CUDA on the device from `gpus`; KIND_CPU (and KIND_AUTO without a GPU) for the CPU.
Whether CUDA really works is only known once a session exists (the onnxruntime-gpu wheel lists the CUDA
provider even where no driver or CUDA library is present), so the session factory checks what it got.
"""

from __future__ import annotations

from dataclasses import dataclass

from crossmodal.v1 import model_config_pb2 as mc

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class ProviderRequest:
    wants_gpu: bool
    device_id: int = 0
    required: bool = False  # KIND_GPU: --strict-gpu refuses to fall back; KIND_AUTO always may

    def providers(self) -> list:
        if self.wants_gpu:
            return [(CUDA, {"device_id": self.device_id}), CPU]
        return [CPU]

    def describe(self) -> str:
        return f"CUDA:{self.device_id}" if self.wants_gpu else "CPU"


def provider_request(config: mc.ModelConfig) -> ProviderRequest:
    """The first instance group decides; KIND_AUTO means GPU 0 (with fallback), as in Triton."""
    if not config.instance_group:
        return ProviderRequest(wants_gpu=False)
    group = config.instance_group[0]
    if group.kind == mc.ModelInstanceGroup.KIND_CPU:
        return ProviderRequest(wants_gpu=False)
    if group.kind == mc.ModelInstanceGroup.KIND_MODEL:
        return ProviderRequest(wants_gpu=False)
    device = group.gpus[0] if group.gpus else 0
    return ProviderRequest(
        wants_gpu=True, device_id=device, required=group.kind == mc.ModelInstanceGroup.KIND_GPU
    )
