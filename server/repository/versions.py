"""Version folders and Triton's version_policy (latest N / all / specific)."""

from __future__ import annotations

import re
from pathlib import Path

from server.core.errors import ModelLoadError
from server.repository.specs import VersionPolicy

VERSION_FOLDER = re.compile(r"[1-9][0-9]{0,17}")  # ASCII digits only: str.isdigit() also takes '²'


def discover_versions(model_dir: Path) -> list[int]:
    """Positive integer sub-folders, ascending; anything else (e.g. `tmp`, `0`, `01x`) is not a version."""
    versions = []
    for child in model_dir.iterdir():
        if child.is_dir() and VERSION_FOLDER.fullmatch(child.name):
            versions.append(int(child.name))
    return sorted(versions)


def select_versions(available: list[int], policy: VersionPolicy, model: str) -> list[int]:
    """The versions the policy serves, ascending. Default (no policy) is Triton's: the newest one."""
    if policy.choice == "all":
        return list(available)
    if policy.choice == "specific":
        wanted = sorted(set(policy.specific))
        missing = [v for v in wanted if v not in available]
        if missing:
            raise ModelLoadError(
                f"model '{model}': version_policy names versions {missing} that have no folder"
            )
        return wanted
    count = policy.latest
    if count < 1:
        raise ModelLoadError(f"model '{model}': version_policy latest num_versions must be at least 1")
    return available[-count:]
