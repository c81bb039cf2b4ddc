"""Which towers may serve together: the two towers of a CLIP are comparable only when they come from one
checkpoint. A variant (an int8 file of the checkpoint) is that checkpoint, so an int8 image tower pairs
with the fp32 text tower. A tower whose files name no checkpoint (an older export, a backend that does not
say) is unknown, and an unknown checkpoint never keeps towers apart: they pair by version number, as they
always did.

Backends say where their weights came from with a `checkpoint_identity` (OnnxModel's, read from the ONNX
metadata); it is read by name here, so pipelines import no backend's runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.backends.onnx.model import CheckpointIdentity


def identity_of(model: object) -> CheckpointIdentity | None:
    """Where a backend says its weights came from; None for backends that do not say."""
    return getattr(model, "checkpoint_identity", None)


def checkpoint_of(model: object) -> str:
    """The checkpoint a backend names, "" when unknown."""
    identity = identity_of(model)
    return identity.checkpoint if identity is not None else ""


def unpaired(towers: dict[str, object], version: int) -> str | None:
    """Why the towers (model name -> backend, at `version`) may not serve together; None when they may."""
    if len({checkpoint_of(model) for model in towers.values()} - {""}) <= 1:
        return None
    named = " and ".join(f"{name} v{version} is of {_described(model)}" for name, model in towers.items())
    return f"{named}: towers of different checkpoints are not comparable"


def shared_checkpoint(towers: list[object]) -> str:
    """The checkpoint every tower names, or "" unless each names it (one unknown tower leaves the pair
    unknown: nothing vouches for it)."""
    checkpoints = {checkpoint_of(model) for model in towers}
    return checkpoints.pop() if len(checkpoints) == 1 else ""


def _described(model: object) -> str:
    identity = identity_of(model)
    if identity is None or not identity.checkpoint:
        return "an unnamed checkpoint"
    return f"checkpoint '{identity.checkpoint}' ({identity.variant})"
