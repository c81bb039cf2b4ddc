"""OpenVINO compile settings from config.pbtxt `parameters` and the instance_group.

Parameters read (all optional; names as in Triton's OpenVINO backend where it has them):
  inference_precision     bf16 | f16 | f32; unset: what OpenVINO picks for the CPU (bf16 where it has
                          AMX or AVX512-BF16), said in the load's log line
  INFERENCE_NUM_THREADS   threads over all streams (default: the cores)
  NUM_STREAMS             parallel infer streams (default: the instance count, so that the batch workers
                          of a model run side by side without each taking every core)
  PERFORMANCE_HINT        LATENCY | THROUGHPUT (default: none; NUM_STREAMS decides)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from server.core.errors import ModelLoadError
from server.repository.specs import ModelSpec

PRECISION = "inference_precision"
THREADS = "INFERENCE_NUM_THREADS"
STREAMS = "NUM_STREAMS"
HINT = "PERFORMANCE_HINT"
PRECISIONS = ("bf16", "f16", "f32")
HINTS = ("LATENCY", "THROUGHPUT")


@dataclass(frozen=True)
class CompileSettings:
    precision: str | None  # None: OpenVINO's choice for the hardware
    threads: int
    streams: int
    hint: str | None

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> CompileSettings:
        parameters = spec.parameters
        precision = parameters.get(PRECISION)
        if precision is not None and precision not in PRECISIONS:
            raise _bad(spec, PRECISION, precision, ", ".join(PRECISIONS))
        hint = parameters.get(HINT)
        if hint is not None and hint not in HINTS:
            raise _bad(spec, HINT, hint, ", ".join(HINTS))
        return cls(
            precision=precision,
            threads=_positive(spec, THREADS, str(os.cpu_count() or 1)),
            streams=_positive(spec, STREAMS, str(spec.instance_count)),
            hint=hint,
        )

    def properties(self) -> dict[str, str]:
        """The CPU plugin's properties, by their OpenVINO names."""
        properties = {"INFERENCE_NUM_THREADS": str(self.threads), "NUM_STREAMS": str(self.streams)}
        if self.precision is not None:
            properties["INFERENCE_PRECISION_HINT"] = self.precision
        if self.hint is not None:
            properties["PERFORMANCE_HINT"] = self.hint
        return properties


def _positive(spec: ModelSpec, key: str, default: str) -> int:
    value = spec.parameters.get(key, default)
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise _bad(spec, key, value, "a whole number of at least 1")
    return number


def _bad(spec: ModelSpec, key: str, value: str, accepted: str) -> ModelLoadError:
    return ModelLoadError(f"model '{spec.name}': parameter '{key}' is {value!r}; accepted: {accepted}")
