"""What a model folder looks like on disk, to tell whether polling must reload it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from server.repository.versions import discover_versions


@dataclass(frozen=True)
class Fingerprint:
    config: bytes  # config.pbtxt as it is
    versions: dict[int, tuple] = field(default_factory=dict)  # version -> (file, size, mtime) of its files

    def changed_versions(self, before: Fingerprint | None) -> set[int]:
        """Versions whose files differ from `before` (all, when the config changed or nothing was known)."""
        if before is None or before.config != self.config:
            return set(self.versions)
        return {v for v, files in self.versions.items() if before.versions.get(v) != files}


def fingerprint(model_dir: Path) -> Fingerprint:
    try:
        config = (model_dir / "config.pbtxt").read_bytes()
    except OSError:
        config = b""
    versions = {}
    for version in discover_versions(model_dir) if model_dir.is_dir() else []:
        files = []
        for path in sorted((model_dir / str(version)).rglob("*")):
            if path.is_file():
                stat = path.stat()
                files.append((str(path.relative_to(model_dir)), stat.st_size, stat.st_mtime_ns))
        versions[version] = tuple(files)
    return Fingerprint(config, versions)
