"""Decoding defaults from `generation_config.json` and per-request overrides, checked."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from server.backends.marian.beam_search import SearchSettings
from server.core.errors import InvalidInput, ModelLoadError
from server.core.types import TranslateOptions

MAX_BEAMS = 32
# Settings that change what generate() computes and that this decoder does not implement.
UNSUPPORTED = {
    "do_sample": False,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "repetition_penalty": 1.0,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "exponential_decay_length_penalty": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "max_new_tokens": None,
}


@dataclass(frozen=True)
class GenerationDefaults:
    decoder_start_id: int
    eos_id: int
    pad_id: int
    num_beams: int = 1
    max_length: int = 20
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    bad_words: tuple[tuple[int, ...], ...] = ()
    forced_eos_id: int | None = None
    min_length: int = 0
    renormalize: bool = False

    @classmethod
    def from_file(cls, path: Path, pad_id: int, eos_id: int) -> GenerationDefaults:
        try:
            config = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"cannot read {path}: {error}") from error
        unsupported = {
            k: config[k] for k, neutral in UNSUPPORTED.items() if config.get(k, neutral) != neutral
        }
        if unsupported:
            raise ModelLoadError(f"{path}: generation settings not supported by this decoder: {unsupported}")
        eos = config.get("eos_token_id", eos_id)
        if isinstance(eos, list):
            if len(eos) != 1:
                raise ModelLoadError(f"{path}: several eos_token_id values are not supported: {eos}")
            eos = eos[0]
        return cls(
            decoder_start_id=int(config.get("decoder_start_token_id", pad_id)),
            eos_id=int(eos),
            pad_id=int(config.get("pad_token_id", pad_id)),
            num_beams=int(config.get("num_beams", 1)),
            max_length=int(config.get("max_length", 20)),
            length_penalty=float(config.get("length_penalty", 1.0)),
            early_stopping=config.get("early_stopping", False),
            bad_words=tuple(tuple(int(t) for t in words) for words in config.get("bad_words_ids") or ()),
            forced_eos_id=config.get("forced_eos_token_id"),
            min_length=int(config.get("min_length", 0)),
            renormalize=bool(config.get("renormalize_logits", False)),
        )


DEFAULT_HYPOTHESES = 5


def search_settings(
    defaults: GenerationDefaults, options: TranslateOptions, max_positions: int
) -> SearchSettings:
    """Merges defaults and request options; a bad option raises InvalidInput naming it."""
    if options.num_beams < 0 or options.num_beams > MAX_BEAMS:
        raise InvalidInput(f"num_beams must be 0 (model default) or 1..{MAX_BEAMS}, got {options.num_beams}")
    if not 0 <= options.num_hypotheses <= MAX_BEAMS:
        raise InvalidInput(
            f"num_hypotheses must be 0 (default) or 1..{MAX_BEAMS}, got {options.num_hypotheses}"
        )
    if options.max_length < 0 or options.max_length == 1 or options.max_length > max_positions:
        raise InvalidInput(
            f"max_length must be 0 (model default) or 2..{max_positions} (decoder length including the start "
            f"token), got {options.max_length}"
        )
    if not math.isfinite(options.length_penalty):
        raise InvalidInput(f"length_penalty must be a finite number, got {options.length_penalty}")
    wanted = options.num_hypotheses or DEFAULT_HYPOTHESES
    if options.num_beams:
        beams = options.num_beams
        if options.num_hypotheses > beams:
            raise InvalidInput(f"num_hypotheses ({options.num_hypotheses}) cannot exceed num_beams ({beams})")
        wanted = min(wanted, beams)
    else:
        beams = max(defaults.num_beams, wanted)
    return SearchSettings(
        num_beams=beams,
        num_return=wanted,
        max_length=min(options.max_length or defaults.max_length, max_positions),
        eos_id=defaults.eos_id,
        length_penalty=options.length_penalty or defaults.length_penalty,
        early_stopping=defaults.early_stopping if options.early_stopping is None else options.early_stopping,
        bad_words=defaults.bad_words,
        forced_eos_id=defaults.forced_eos_id,
        min_length=defaults.min_length,
        renormalize=defaults.renormalize,
    )
