"""Session-wide fixtures: a tiny random-weight CLIP checkpoint, its export, and a real server over it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import running_server
from tools.build_tiny_clip import PRESETS, build_tiny_clip
from tools.build_tiny_marian import build_tiny_marian
from tools.export_clip import export_clip
from tools.export_marian import export_marian

TRANSLATOR_PARAMETER = 'parameters { key: "translator" value { string_value: "opus_mt_zh_en" } }\n'


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), PRESETS["tiny"], seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint_v2(tmp_path_factory) -> Path:
    """Same shape, other weights: version 2 of the towers."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip-v2"), PRESETS["tiny"], seed=1)


@pytest.fixture(scope="session")
def marian_checkpoint(tmp_path_factory) -> Path:
    """A tiny Marian zh->en, briefly trained so that its outputs depend on the input."""
    return build_tiny_marian(tmp_path_factory.mktemp("tiny-marian"), seed=0)


@pytest.fixture(scope="session")
def marian_repository(tmp_path_factory, marian_checkpoint) -> Path:
    """The tiny Marian exported by optimum-cli into a repository of its own."""
    repository = tmp_path_factory.mktemp("marian") / "model_repository"
    export_marian(str(marian_checkpoint), repository, version=1)
    return repository


@pytest.fixture(scope="session")
def exported_repository(tmp_path_factory, tiny_checkpoint, tiny_checkpoint_v2, marian_repository) -> Path:
    """Versions 1 and 2 of both CLIP towers, the translator, a `clip` pipeline naming all three and a
    `clip_plain` pipeline without translator (pristine: tests that modify it use `repository_copy`)."""
    repository = tmp_path_factory.mktemp("exported") / "model_repository"
    export_clip(str(tiny_checkpoint), repository, version=1)
    export_clip(str(tiny_checkpoint_v2), repository, version=2)
    for tower in ("clip_vision", "clip_text"):
        config = repository / tower / "config.pbtxt"
        config.write_text(config.read_text() + "version_policy { all {} }\n")
    shutil.copytree(marian_repository / "opus_mt_zh_en", repository / "opus_mt_zh_en")
    pipeline = repository / "clip" / "config.pbtxt"
    untranslated = pipeline.read_text()
    pipeline.write_text(untranslated + TRANSLATOR_PARAMETER)
    # A second pipeline over the same towers that embeds every text as given (for reference parity).
    (repository / "clip_plain").mkdir()
    (repository / "clip_plain" / "config.pbtxt").write_text(untranslated.replace('"clip"', '"clip_plain"'))
    return repository


@pytest.fixture
def repository_copy(exported_repository, tmp_path) -> Path:
    target = tmp_path / "model_repository"
    shutil.copytree(exported_repository, target)
    return target


@pytest.fixture(scope="session")
def server_address(exported_repository):
    with running_server(exported_repository) as (address, _process):
        yield address
