"""The shared test helpers under their former module name; they live in tests.fixtures."""

from tests.fixtures.reference import load_open_clip_tokenizer
from tests.fixtures.server import ROOT, encoded_image, free_port, in_process_server, running_server

__all__ = [
    "ROOT",
    "encoded_image",
    "free_port",
    "in_process_server",
    "load_open_clip_tokenizer",
    "running_server",
]
