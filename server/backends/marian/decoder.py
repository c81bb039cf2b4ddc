"""The Marian ONNX graphs of the optimum export, driven step by step for beam search.

Layouts accepted: `encoder_model.onnx` with either `decoder_model.onnx` + `decoder_with_past_model.onnx`,
or `decoder_model_merged.onnx` (one graph, `use_cache_branch` picks the path). The first step computes
each sentence's cross-attention keys/values once; later steps feed them back unchanged and only the
self-attention cache follows the beams. Every step is preceded by a cancellation check in the search;
the first step's copy of the cross-attention cache for every beam, the largest piece of work, checks as
it goes.
"""

from __future__ import annotations

import re

import numpy as np
import onnxruntime as ort

from server.core.cancellation import check_cancelled
from server.core.errors import ModelLoadError

_PRESENT = re.compile(r"present\.(\d+)\.(decoder|encoder)\.(key|value)")
CHECK_BYTES = 64 * 1024 * 1024  # repeated cache written between two cancellation checks


def repeat_rows(array: np.ndarray, times: int) -> np.ndarray:
    """np.repeat(array, times, axis=0), written a slice at a time with a cancellation check before each:
    for a large batch with wide beams it is hundreds of megabytes, which take seconds to fill."""
    rows = array.shape[0]
    out = np.empty((rows * times, *array.shape[1:]), dtype=array.dtype)
    per_sentence = out.reshape(rows, times, *array.shape[1:])
    step = max(1, CHECK_BYTES // max(1, array[:1].nbytes * times))
    for start in range(0, rows, step):
        check_cancelled("Marian decoder start")
        per_sentence[start : start + step] = array[start : start + step, None]
    return out


class MarianGraphs:
    """The encoder and decoder sessions of one Marian model version."""

    def __init__(
        self,
        encoder: ort.InferenceSession,
        decoder: ort.InferenceSession,
        decoder_with_past: ort.InferenceSession,
        merged: bool,
    ) -> None:
        self.encoder = encoder
        self.decoder = decoder  # the first step, without past
        self.decoder_with_past = decoder_with_past  # the same session when merged
        self.merged = merged
        outputs = [o.name for o in decoder.get_outputs()]
        layers = {int(m.group(1)) for n in outputs if (m := _PRESENT.fullmatch(n))}
        if not layers or "logits" not in outputs:
            raise ModelLoadError(
                f"the decoder graph lacks logits/present.* outputs (outputs: {outputs[:6]}...)"
            )
        self.layers = max(layers) + 1
        if "past_key_values.0.decoder.key" not in {i.name for i in decoder_with_past.get_inputs()}:
            raise ModelLoadError("the decoder-with-past graph has no past_key_values.* inputs")

    def names(self, kind: str, part: str) -> list[str]:
        return [f"{kind}.{layer}.{part}.{t}" for layer in range(self.layers) for t in ("key", "value")]


class MarianStepDecoder:
    """One beam search's decoder state over ONNX Runtime (implements beam_search.StepDecoder)."""

    def __init__(
        self, graphs: MarianGraphs, input_ids: np.ndarray, attention_mask: np.ndarray, start_id: int
    ):
        self._graphs = graphs
        self._mask = attention_mask
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        self._hidden = graphs.encoder.run(["last_hidden_state"], feeds)[0]
        self._start_id = start_id
        self._self_kv: list[np.ndarray] = []
        self._cross_kv: list[np.ndarray] = []

    def start(self, num_beams: int) -> np.ndarray:
        g = self._graphs
        sentences = self._hidden.shape[0]
        feeds = {
            "input_ids": np.full((sentences, 1), self._start_id, dtype=np.int64),
            "encoder_attention_mask": self._mask,
            "encoder_hidden_states": self._hidden,
        }
        if g.merged:
            feeds.update(self._empty_past(sentences))
            feeds["use_cache_branch"] = np.array([False])
        outputs = g.decoder.run(
            ["logits", *g.names("present", "decoder"), *g.names("present", "encoder")], feeds
        )
        layers2 = 2 * g.layers
        # Beams of a sentence start identical: repeat every per-sentence array num_beams times, once.
        self._self_kv = [repeat_rows(x, num_beams) for x in outputs[1 : 1 + layers2]]
        self._cross_kv = [repeat_rows(x, num_beams) for x in outputs[1 + layers2 :]]
        self._mask = np.repeat(self._mask, num_beams, axis=0)
        self._hidden = None  # the cross-attention cache replaces it
        return np.repeat(outputs[0][:, -1, :], num_beams, axis=0)

    def advance(self, parents: np.ndarray, tokens: np.ndarray, kept_rows: np.ndarray | None) -> np.ndarray:
        g = self._graphs
        if kept_rows is not None:
            self._cross_kv = [x[kept_rows] for x in self._cross_kv]
            self._mask = self._mask[kept_rows]
        self._self_kv = [x[parents] for x in self._self_kv]
        feeds = {"input_ids": tokens.reshape(-1, 1).astype(np.int64), "encoder_attention_mask": self._mask}
        feeds.update(zip(g.names("past_key_values", "decoder"), self._self_kv, strict=True))
        feeds.update(zip(g.names("past_key_values", "encoder"), self._cross_kv, strict=True))
        if g.merged:
            rows, hidden = len(tokens), self._cross_kv[0].shape[-1] * self._cross_kv[0].shape[1]
            feeds["encoder_hidden_states"] = np.zeros((rows, self._mask.shape[1], hidden), dtype=np.float32)
            feeds["use_cache_branch"] = np.array([True])
        outputs = g.decoder_with_past.run(["logits", *g.names("present", "decoder")], feeds)
        self._self_kv = outputs[1:]
        return outputs[0][:, -1, :]

    def _empty_past(self, sentences: int) -> dict[str, np.ndarray]:
        """Zero-length past for the merged graph's no-cache branch (shapes must still match)."""
        heads, head_dim = self._head_shape()
        source = self._mask.shape[1]
        feeds = {}
        for name in self._graphs.names("past_key_values", "decoder"):
            feeds[name] = np.zeros((sentences, heads, 0, head_dim), dtype=np.float32)
        for name in self._graphs.names("past_key_values", "encoder"):
            feeds[name] = np.zeros((sentences, heads, source, head_dim), dtype=np.float32)
        return feeds

    def _head_shape(self) -> tuple[int, int]:
        for graph_input in self._graphs.decoder.get_inputs():
            if graph_input.name == "past_key_values.0.decoder.key":
                heads, head_dim = graph_input.shape[1], graph_input.shape[3]
                if isinstance(heads, int) and isinstance(head_dim, int):
                    return heads, head_dim
        raise ModelLoadError("cannot read the attention head shape from the merged decoder graph")
