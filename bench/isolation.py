"""Runs each in-process measurement in a fresh interpreter.

ONNX Runtime, PyTorch and CTranslate2 each keep their own thread pools (two different OpenMP runtimes
among them) whose threads stay around, and may spin, after the library was last used. Measured in one
process, whichever engine runs later shares the cores with the idle pools of the earlier ones; a fresh
process per engine gives each the machine to itself.
"""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def in_fresh_process(function: Callable[..., T], *args) -> T:
    """function(*args) in a newly spawned interpreter; its result (and any exception) comes back pickled.
    `function` must be importable at module level."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=quiet_known_warnings) as pool:
        return pool.submit(function, *args).result()


def quiet_known_warnings() -> None:
    # MarianTokenizer recommends sacremoses, which only its unused source normalisation would need.
    warnings.filterwarnings("ignore", message="Recommended: pip install sacremoses")


def progress(section: str) -> Callable[[str], None]:
    """A printer of progress lines tagged with the section, e.g. `[p1] ...`."""

    def say(line: str) -> None:
        print(f"[{section}] {line}", flush=True)

    return say
