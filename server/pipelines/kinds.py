"""The kinds of pipeline a config.pbtxt may declare, and the roles of their parts.

A pipeline config names a model per role (e.g. `vision_model: "clip_vision"`). A role says what the
model must be able to do (its capability) and whether it must serve at the same version as the other
such parts: the two towers of one CLIP come from one checkpoint, so only a version both hold is usable,
while a translator is used at whatever version is newest. The repository reads the roles from here to
know which versions a pipeline still needs, without knowing any kind by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.backends.base import Capability

KIND_PARAMETER = "pipeline_kind"  # config.pbtxt parameter choosing the kind; absent = DEFAULT_KIND


@dataclass(frozen=True)
class Role:
    name: str  # what the pipeline calls the part
    parameter: str  # the config.pbtxt parameter that names its model
    capability: Capability
    same_version: bool  # served only at a version every same_version part of the pipeline holds
    required: bool = True


@dataclass(frozen=True)
class PipelineKind:
    name: str
    roles: tuple[Role, ...]

    def role(self, name: str) -> Role:
        return next(role for role in self.roles if role.name == name)


CLIP = PipelineKind(
    "clip",
    (
        Role("vision", "vision_model", Capability.EMBED_IMAGES, same_version=True),
        Role("text", "text_model", Capability.EMBED_TEXTS, same_version=True),
        Role("translator", "translator", Capability.TRANSLATE, same_version=False, required=False),
    ),
)

PIPELINE_KINDS: dict[str, PipelineKind] = {CLIP.name: CLIP}
DEFAULT_KIND = CLIP.name
