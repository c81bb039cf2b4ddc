"""Session-wide fixtures: a tiny random-weight CLIP checkpoint, its export, and a real server over it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import running_server
from tools.build_tiny_clip import PRESETS, build_tiny_clip
from tools.export_clip import export_clip


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"), PRESETS["tiny"], seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint_v2(tmp_path_factory) -> Path:
    """Same shape, other weights: version 2 of the towers."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip-v2"), PRESETS["tiny"], seed=1)


@pytest.fixture(scope="session")
def exported_repository(tmp_path_factory, tiny_checkpoint, tiny_checkpoint_v2) -> Path:
    """A repository with versions 1 and 2 of both towers and a `clip` pipeline (pristine: copy to modify)."""
    repository = tmp_path_factory.mktemp("exported") / "model_repository"
    export_clip(str(tiny_checkpoint), repository, version=1)
    export_clip(str(tiny_checkpoint_v2), repository, version=2)
    for tower in ("clip_vision", "clip_text"):
        config = repository / tower / "config.pbtxt"
        config.write_text(config.read_text() + "version_policy { all {} }\n")
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
