"""The CLIP text tower: texts -> CLIP BPE ids (length-bucketed batches) -> L2-normalised embeddings."""

from __future__ import annotations

import numpy as np

from server.errors import ModelLoadError
from server.models.onnx_model import ModelSource, OnnxModel, l2_normalise
from server.runtime.session import SessionFactory
from server.text.clip_tokenizer import ClipTokenizer


class ClipTextModel(OnnxModel):
    model_type = "clip_text"

    def __init__(self, source: ModelSource, factory: SessionFactory) -> None:
        super().__init__(source, self.open_session(source, factory))
        context_length = int(self.float_setting("context_length"))
        self.tokenizer = ClipTokenizer.from_file(source.directory / "tokenizer.json", context_length)
        self.logit_scale = self.float_setting("logit_scale")
        if "input_ids" not in self.input_names:
            raise ModelLoadError(
                f"model '{self.name}': the ONNX graph has no 'input_ids' input ({self.input_names})"
            )

    def embed(self, texts: list[str]) -> np.ndarray:
        """[N] texts -> [N, D], L2-normalised, in input order.

        Texts are sorted by token count and cut into batches, each padded only to its own longest text.
        """
        sequences = self.tokenizer.token_ids(texts)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        result: np.ndarray | None = None
        for start in range(0, len(order), self.max_batch_size):
            rows = order[start : start + self.max_batch_size]
            ids, mask = self.tokenizer.pad([sequences[i] for i in rows])
            feeds = {"input_ids": ids}
            if "attention_mask" in self.input_names:
                feeds["attention_mask"] = mask
            embeds = self.session.run([self.output_name], feeds)[0]
            if result is None:
                result = np.empty((len(texts), embeds.shape[1]), dtype=np.float32)
            result[rows] = embeds
        return l2_normalise(result)

    def warmup(self) -> None:
        self.embed(["a photo of a dog in the snow", "a cat"])
