"""The `clip` pipeline: routes items to the image and text towers and puts the embeddings back in order.

A pipeline config names its parts (`vision_model`, `text_model`, optionally `translator`). The two towers
of one CLIP are only comparable when they come from the same checkpoint, so a pipeline version is a
version that is ready in both towers and whose towers pair (server/pipelines/pairing.py: variants of one
checkpoint do, towers naming different checkpoints never); version 0 picks the newest such version. Chinese
texts go through the translator (its newest ready version) and the best translation is what the text
tower sees.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from server.backends.base import ImageEmbedder, TextEmbedder, has
from server.core.cancellation import check_cancelled, current_token, run_here, run_with_token
from server.core.config import Limits
from server.core.errors import (
    CrossModalError,
    InvalidInput,
    LimitExceeded,
    ModelLoadError,
    ModelNotFound,
    ModelNotReady,
    NotAllowed,
)
from server.core.pending import Pending
from server.core.types import ImageInput, Input, TextOutcome, TranslateOptions
from server.images.decode import ImageDecodeError, ImageTooLarge, load_rgb, open_image
from server.images.decode_cost import decode_bytes
from server.images.reduced_decode import decoding_of
from server.memory_budget import MemoryBudget
from server.pipelines.kinds import CLIP
from server.pipelines.language import CHINESE
from server.pipelines.pairing import shared_checkpoint, unpaired
from server.pipelines.text import Offload, describe_text, resolve_translator, translate_outcomes
from server.repository.repository import ModelRepository, State
from server.repository.specs import PipelineSpec

log = logging.getLogger(__name__)


VISION, TEXT, TRANSLATOR = (CLIP.role(name) for name in ("vision", "text", "translator"))
# Texts with more characters than this in all are prepared on a worker thread; fewer take less time on
# the event loop (jieba: a few microseconds a character) than the hop to a thread would.
INLINE_TEXT_CHARS = 64


def heavy_texts(texts: Iterable[str], inline_chars: int = INLINE_TEXT_CHARS) -> bool:
    """Whether work on `texts` is worth a hop to a worker thread: they have over `inline_chars`
    characters in all (the default: preparing, translating and tokenising them)."""
    total = 0
    for text in texts:
        total += len(text)
        if total > inline_chars:
            return True
    return False


@dataclass(frozen=True)
class Embedded:
    embeddings: np.ndarray  # [N, D] in input order
    texts: list[TextOutcome]  # one per text input, in order
    models: list[tuple[str, int]]  # every model version that took part


@dataclass(frozen=True)
class ClipPipeline:
    name: str
    vision: ImageEmbedder
    text: TextEmbedder
    repository: ModelRepository
    translator: str | None = None  # model name; resolved only when a Chinese text needs it
    translate_options: TranslateOptions = field(default_factory=TranslateOptions)

    @property
    def logit_scale(self) -> float:
        return self.text.logit_scale

    @property
    def embedding_dim(self) -> int:
        return self.text.embedding_dim

    @property
    def models(self) -> list[tuple[str, int]]:
        return [(self.vision.name, self.vision.version), (self.text.name, self.text.version)]

    @property
    def version(self) -> int:
        """The pipeline version: the one both towers serve at."""
        return self.vision.version

    @property
    def checkpoint(self) -> str:
        """The checkpoint both towers come from; "" when a tower does not say."""
        return shared_checkpoint([self.vision, self.text])

    async def embed(
        self,
        named_inputs: list[tuple[str, Input]],
        limits: Limits,
        offload: Offload,
        pool: Executor | None = None,
        item_errors: dict[int, CrossModalError] | None = None,
        budget: MemoryBudget | None = None,
    ) -> Embedded:
        """Embeds (name, input) pairs, in order; `name` (e.g. "items[3]") is what errors call the item.

        In stages: images are decoded (in `pool` when given) and queued for the image tower before the
        texts are looked at, so image inference overlaps text work; texts are prepared (jieba), the
        Chinese ones translated, and queued for the text tower; then every batch is awaited. No thread is
        held while a batch forms and runs. The CPU work goes through `offload` only where it outweighs
        the hop to a worker thread: images and the texts' preparation share one hop, and a call of a few
        short texts (answered from the response cache, or tokenised in microseconds) makes none. With
        `item_errors`, an item that cannot be embedded is recorded there (by row) and its row left NaN,
        instead of failing the whole call. Each image's decode waits for its estimated memory in `budget`.
        """
        images, texts = [], []
        for row, (name, item) in enumerate(named_inputs):
            (images if isinstance(item, ImageInput) else texts).append((row, name, item))
        text_stage = offload if heavy_texts(item.text for _, _, item in texts) else run_here
        pending: list[tuple[list[int], Pending[np.ndarray]]] = []
        models = list(self.models)
        try:
            queued_images, described = await (offload if images else text_stage)(
                self._prepare, images, texts, limits, pool, item_errors, budget
            )
            if queued_images is not None:
                pending.append(queued_images)
            texts = [t for t, outcome in zip(texts, described, strict=True) if outcome is not None]
            outcomes = [outcome for outcome in described if outcome is not None]
            translated_by = await self._translate_chinese(outcomes, text_stage)
            if translated_by:
                models.append(translated_by)
            if outcomes:
                queued = await text_stage(self._queue_texts, [o.encoded_text for o in outcomes])
                pending.append(([row for row, _, _ in texts], queued))
            parts = [(rows, await queued.wait()) for rows, queued in pending]
        except BaseException:
            for _, queued in pending:  # nobody will read these: free their queue places
                queued.withdraw()
            raise
        dims = {vectors.shape[1] for _, vectors in parts} or {self.text.embedding_dim}
        if len(dims) != 1:
            raise ModelLoadError(f"pipeline '{self.name}': image and text embeddings differ in size {dims}")
        embeddings = np.full((len(named_inputs), dims.pop()), np.nan, dtype=np.float32)
        for rows, vectors in parts:
            embeddings[rows] = vectors
        return Embedded(embeddings, outcomes, models)

    def _prepare(
        self,
        images: list[tuple[int, str, ImageInput]],
        texts: list[tuple[int, str, Input]],
        limits: Limits,
        pool: Executor | None,
        item_errors: dict[int, CrossModalError] | None,
        budget: MemoryBudget | None,
    ) -> tuple[tuple[list[int], Pending[np.ndarray]] | None, list[TextOutcome | None]]:
        """Queues the images (see _queue_images), then describes the texts: one stage, so that a call
        with images hops to a worker thread once for both. Images queued for a call that then fails on
        a text are withdrawn."""
        queued = self._queue_images(images, limits, pool, item_errors, budget) if images else None
        try:
            return queued, _described_all(texts, limits, item_errors)
        except BaseException:
            if queued is not None:
                queued[1].withdraw()
            raise

    def _queue_texts(self, texts: list[str]) -> Pending[np.ndarray]:
        """Tokenises (texts the response cache holds are not) and queues the texts."""
        return self.text.submit_texts(texts).withdrawn_on_cancel()

    def _queue_images(
        self,
        images: list[tuple[int, str, ImageInput]],
        limits: Limits,
        pool: Executor | None,
        item_errors: dict[int, CrossModalError] | None,
        budget: MemoryBudget | None,
    ) -> tuple[list[int], Pending[np.ndarray]] | None:
        """Decodes and queues the images (on a worker thread): the rows queued and their Pending, if any.
        Failures raise, or go to item_errors when given."""

        def prepare(entry: tuple[int, str, ImageInput]) -> tuple[int, np.ndarray | CrossModalError]:
            row, name, item = entry
            try:
                check_cancelled("decoding")  # a cancelled call decodes none of its remaining images
                return row, self._decode_and_preprocess(name, item.data, limits, budget)
            except CrossModalError as error:
                if item_errors is None:
                    raise
                return row, error

        if pool is None or len(images) == 1:
            prepared = [prepare(entry) for entry in images]
        else:
            token = current_token()  # the pool's threads do not inherit the call's context
            prepared = list(pool.map(lambda entry: run_with_token(token, prepare, entry), images))
        kept = []
        for row, result in prepared:
            if isinstance(result, CrossModalError):
                item_errors[row] = result
            else:
                kept.append((row, result))
        if not kept:
            return None
        queued = self.vision.submit_images([pixels for _, pixels in kept]).withdrawn_on_cancel()
        return [row for row, _ in kept], queued

    async def _translate_chinese(
        self, outcomes: list[TextOutcome], offload: Offload
    ) -> tuple[str, int] | None:
        """Translates the Chinese outcomes in place, in one decode; returns the translator used, if any."""
        chinese = [i for i, o in enumerate(outcomes) if o.language == CHINESE]
        if not chinese or not self.translator:
            return None
        translator = resolve_translator(self.repository, self.translator, 0)
        translated = await translate_outcomes(
            [outcomes[i] for i in chinese], translator, self.translate_options, offload
        )
        for i, outcome in zip(chinese, translated, strict=True):
            outcomes[i] = outcome
        return translator.name, translator.version

    def _decode_and_preprocess(
        self, item_name: str, data: bytes, limits: Limits, budget: MemoryBudget | None
    ) -> np.ndarray:
        """Pixels for the vision tower; the decode first reserves, in `budget`, the memory its header says
        decoding and preprocessing will take, and holds it until only the output is left."""
        if len(data) > limits.max_image_bytes:
            raise LimitExceeded(
                f"{item_name}: image is {len(data)} bytes; the limit is {limits.max_image_bytes}"
            )
        try:
            image = open_image(data, limits.max_image_pixels)
        except ImageTooLarge as error:
            raise LimitExceeded(f"{item_name}: {error}") from error
        except ImageDecodeError as error:
            raise InvalidInput(f"{item_name}: {error}") from error
        width, height = image.size
        decoding_of(self.vision).reduce(image)  # before the estimate: it follows the size decoded
        if budget is None:
            return self.vision.preprocess(self._load(item_name, image))
        cost = decode_bytes(image) + self.vision.preprocess_bytes(*image.size)
        with budget.reserve(cost, f"{item_name} ({width}x{height} {image.format})"):
            return self.vision.preprocess(self._load(item_name, image))

    @staticmethod
    def _load(item_name: str, image) -> Image.Image:
        try:
            return load_rgb(image)
        except ImageDecodeError as error:
            raise InvalidInput(f"{item_name}: {error}") from error


def _ready(repository: ModelRepository, pipeline: str, tower: str) -> list[int]:
    """Ready versions of a tower; a tower the repository does not hold now makes the pipeline unavailable."""
    try:
        return repository.ready_versions(tower)
    except ModelNotFound as error:
        raise ModelNotReady(f"pipeline '{pipeline}': its model '{tower}' is not loaded") from error


def _described_all(
    texts: list[tuple[int, str, Input]], limits: Limits, item_errors: dict[int, CrossModalError] | None
) -> list[TextOutcome | None]:
    """Each text's outcome (jieba for Chinese; a worker stage), None where it failed into item_errors."""
    return [_described(name, item.text, limits, item_errors, row) for row, name, item in texts]


def _described(
    name: str, text: str, limits: Limits, item_errors: dict[int, CrossModalError] | None, row: int
) -> TextOutcome | None:
    try:
        return describe_text(name, text, limits)
    except CrossModalError as error:
        if item_errors is None:
            raise
        item_errors[row] = error
        return None


def _towers(spec: PipelineSpec) -> tuple[str, str]:
    vision_name, text_name = spec.parts.get(VISION.name), spec.parts.get(TEXT.name)
    if not vision_name or not text_name:
        raise ModelNotReady(
            f"pipeline '{spec.name}': config.pbtxt must name {VISION.parameter} and {TEXT.parameter}"
        )
    return vision_name, text_name


def _common_versions(repository: ModelRepository, name: str, towers: tuple[str, str]) -> list[int]:
    """Versions ready in both towers; raises when a tower is not loaded."""
    return sorted(set(_ready(repository, name, towers[0])) & set(_ready(repository, name, towers[1])))


def _unpaired_versions(
    repository: ModelRepository, towers: tuple[str, str], common: list[int]
) -> dict[int, str]:
    """Of the `common` versions, those whose towers name different checkpoints, with why."""
    models = {
        tower: {s.version: s.model for s in repository.statuses(tower) if s.state is State.READY}
        for tower in towers
    }
    reasons = {}
    for version in common:
        reason = unpaired({tower: models[tower][version] for tower in towers}, version)
        if reason is not None:
            reasons[version] = reason
    return reasons


def resolve_pipeline(repository: ModelRepository, name: str, version: int) -> ClipPipeline:
    spec = repository.pipeline_spec(name)
    vision_name, text_name = towers = _towers(spec)
    with repository.consistent():  # no version may come or go between choosing it and taking both towers
        common, paired, refused = _versions(repository, name, towers)
        if version == 0:
            if refused and not paired:  # retrying cannot help: the repository holds the wrong files
                raise _cannot_serve(name, max(refused), refused)
            if not paired:
                raise ModelNotReady(
                    f"pipeline '{name}': no version is ready in both {vision_name} and {text_name}"
                )
            version = paired[-1]
        elif version in refused:
            raise _cannot_serve(name, version, refused)
        elif version not in common:
            known = {s.version for tower in (vision_name, text_name) for s in repository.statuses(tower)}
            error = ModelNotReady if version in known else ModelNotFound  # loading or leaving: retry later
            raise error(
                f"pipeline '{name}' has no version {version} ready in both {vision_name} and {text_name} "
                f"(ready: {paired})"
            )
        vision = repository.model(vision_name, version)
        text = repository.model(text_name, version)
    if not has(vision, VISION.capability) or not has(text, TEXT.capability):
        raise ModelNotReady(f"pipeline '{name}': {vision_name} must embed images and {text_name} texts")
    return ClipPipeline(name, vision, text, repository, spec.parts.get(TRANSLATOR.name))


def _servable(repository: ModelRepository, name: str) -> tuple[list[int], dict[int, str]]:
    """The versions the pipeline can serve now, and the ready ones it cannot with why; raises when a
    tower is not loaded or the pipeline is unknown."""
    towers = _towers(repository.pipeline_spec(name))
    with repository.consistent():
        _, paired, refused = _versions(repository, name, towers)
    return paired, refused


def _versions(
    repository: ModelRepository, name: str, towers: tuple[str, str]
) -> tuple[list[int], list[int], dict[int, str]]:
    """The versions ready in both towers, those of them whose towers pair, and the others with why (call
    it in `repository.consistent()`)."""
    common = _common_versions(repository, name, towers)
    refused = _unpaired_versions(repository, towers, common)
    return common, [v for v in common if v not in refused], refused


def _cannot_serve(name: str, version: int, refused: dict[int, str]) -> NotAllowed:
    return NotAllowed(f"pipeline '{name}' version {version} cannot serve: {refused[version]}")


def pipeline_versions(repository: ModelRepository, name: str) -> list[int]:
    """The versions the pipeline can serve now: ready in both towers, and the towers pair."""
    try:
        return _servable(repository, name)[0]
    except (ModelNotFound, ModelNotReady):
        return []


def unready_reason(repository: ModelRepository, name: str) -> str:
    """Why the pipeline cannot serve now ("" when it can)."""
    try:
        versions, refused = _servable(repository, name)
    except (ModelNotFound, ModelNotReady) as error:
        return str(error)
    if versions:
        return ""
    if refused:
        newest = max(refused)
        return f"version {newest}: {refused[newest]}"
    return "its towers share no ready version"


def pipeline_ready(repository: ModelRepository, name: str) -> bool:
    """Whether the pipeline can serve now (both towers share a ready version, and they pair)."""
    return bool(pipeline_versions(repository, name))
