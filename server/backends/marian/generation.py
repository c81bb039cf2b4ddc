"""Search settings: the model's defaults from `generation_config.json`, a request's overrides, checked."""

from __future__ import annotations

import json
import math
from dataclasses import replace
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


def read_generation_config(path: Path) -> dict:
    """`generation_config.json` (absent: {}); settings this decoder does not implement are refused."""
    try:
        config = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read {path}: {error}") from error
    unsupported = {k: config[k] for k, neutral in UNSUPPORTED.items() if config.get(k, neutral) != neutral}
    if unsupported:
        raise ModelLoadError(f"{path}: generation settings not supported by this decoder: {unsupported}")
    return config


def decoder_start_id(config: dict, pad_id: int) -> int:
    """The first decoder token: Marian starts from the pad token unless the config says otherwise."""
    return int(config.get("decoder_start_token_id", pad_id))


def default_settings(config: dict, eos_id: int, source: Path) -> SearchSettings:
    """The model's own search settings (what a request of all zeros gets), from its generation config."""
    eos = config.get("eos_token_id", eos_id)
    if isinstance(eos, list):
        if len(eos) != 1:
            raise ModelLoadError(f"{source}: several eos_token_id values are not supported: {eos}")
        eos = eos[0]
    try:
        return SearchSettings(
            num_beams=int(config.get("num_beams", 1)),
            num_return=1,
            max_length=int(config.get("max_length", 20)),
            eos_id=int(eos),
            length_penalty=float(config.get("length_penalty", 1.0)),
            early_stopping=config.get("early_stopping", False),
            bad_words=tuple(tuple(int(t) for t in words) for words in config.get("bad_words_ids") or ()),
            forced_eos_id=config.get("forced_eos_token_id"),
            min_length=int(config.get("min_length", 0)),
            renormalize=bool(config.get("renormalize_logits", False)),
        )
    except ValueError as error:
        raise ModelLoadError(f"{source}: {error}") from error


DEFAULT_HYPOTHESES = 5


def search_settings(
    defaults: SearchSettings, options: TranslateOptions, max_positions: int
) -> SearchSettings:
    """The model's defaults with a request's options; a bad option raises InvalidInput naming it."""
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
    return replace(
        defaults,
        num_beams=beams,
        num_return=wanted,
        max_length=min(options.max_length or defaults.max_length, max_positions),
        length_penalty=options.length_penalty or defaults.length_penalty,
        early_stopping=defaults.early_stopping if options.early_stopping is None else options.early_stopping,
    )
