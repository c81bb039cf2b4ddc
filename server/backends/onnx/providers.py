"""Maps a model's instance_group to ONNX Runtime execution providers.

KIND_GPU asks for CUDA on the device from `gpus`; KIND_CPU and KIND_MODEL for the CPU; KIND_AUTO for CUDA
with a fallback.
Whether CUDA really works is only known once a session exists (the onnxruntime-gpu wheel lists the CUDA
provider even where no driver or CUDA library is present), so the session factory checks what it got.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.repository.specs import KIND_CPU, KIND_GPU, KIND_MODEL, DeviceSpec

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


def provider_request(device: DeviceSpec) -> ProviderRequest:
    """KIND_AUTO means GPU 0 (with fallback), as in Triton."""
    if device.kind in (KIND_CPU, KIND_MODEL):
        return ProviderRequest(wants_gpu=False)
    gpu = device.gpus[0] if device.gpus else 0
    return ProviderRequest(wants_gpu=True, device_id=gpu, required=device.kind == KIND_GPU)
