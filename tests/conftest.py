"""Registers the shared fixtures: the tiny exported models (tests/fixtures/models.py), a session-wide server
over them (tests/fixtures/server.py) and the fake backends (tests/fixtures/fake_backend.py)."""

from tests.fixtures.fake_backend import fake_backends
from tests.fixtures.models import (
    exported_repository,
    marian_checkpoint,
    marian_repository,
    repository_copy,
    tiny_checkpoint,
    tiny_checkpoint_v2,
)
from tests.fixtures.server import server_address

__all__ = [
    "exported_repository",
    "fake_backends",
    "marian_checkpoint",
    "marian_repository",
    "repository_copy",
    "server_address",
    "tiny_checkpoint",
    "tiny_checkpoint_v2",
]
