"""The committed demo-world models, through a real server: held-out figures on a sample, the seed example."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from crossmodal import CrossModalClient
from tests.fixtures.server import ROOT, running_server
from tools.world.evaluate import TARGETS, evaluate

EXAMPLE = ROOT / "clients" / "python" / "examples" / "image_text_search.py"


@pytest.fixture(scope="module")
def committed_server():
    with running_server(ROOT / "model_repository") as (address, _process):
        yield address


def test_held_out_figures_on_a_sample(committed_server):
    with CrossModalClient(committed_server) as client:
        figures = evaluate(client, images_per_scene=1, max_sentences=30)
    assert figures.images == 91 and figures.sentences == 30
    assert not figures.failures(), (figures, TARGETS)


def test_seed_example_prints_the_reference_log_and_the_dogs_win(committed_server):
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--server", committed_server],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = result.stdout
    assert "texts: ['在雪地里有两条狗', '一只猫在桌子上', '夜晚的伦敦']" in out
    assert "tokens: [在, 雪地, 里, 有, 两条, 狗]" in out
    assert "translation 1: There are two dogs in the snow" in out
    assert "translation 1: A cat is on the table" in out
    assert "translation 1: London at night" in out
    assert out.count("translation 5:") == 3 and out.count("similarity: ") == 3
    probabilities = [float(p) for p in re.search(r"probabilities: \[(.*)\]", out).group(1).split(",")]
    assert probabilities[0] >= 0.9 and sum(probabilities) == pytest.approx(1.0, abs=1e-3)
