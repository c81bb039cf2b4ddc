"""What the server checks in a Milvus Lite data folder before serving it.

Milvus Lite keeps one folder per collection under `<index>/collections/<name>/`: `schema.json` (written
when the collection is created; its presence is what makes the folder a collection), `manifest.json`
(the committed list of data files, replaced atomically, the version before it kept in
`manifest.json.prev`), `wal/` and `partitions/`. Two things the library does not handle:

* a folder without `schema.json` is left by a create or a drop that stopped half-way (creation makes the
  folder first, dropping deletes it file by file); the library neither lists nor re-creates such a name,
  so it would answer "already exists" for ever;
* a `manifest.json` that does not parse is replaced by `manifest.json.prev` without a word, so the rows
  of the latest commit silently vanish and new writes land on top of the older state; worse, opening the
  collection then deletes the data files the older manifest does not name, so the rows are gone for good.

So a collection with a bad manifest is set aside, untouched, in `<index>/refused/<name>/` before the
library can open it, and is refused by name until its manifest is restored there (it moves back at the
next start) or it is dropped.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_FILE = "schema.json"
MANIFEST_FILE = "manifest.json"
PREVIOUS_MANIFEST_FILE = "manifest.json.prev"


def collections_folder(data_dir: Path) -> Path:
    return data_dir / "collections"


def remove_unfinished(data_dir: Path, name: str | None = None) -> list[str]:
    """Deletes collection folders without a schema (all, or just `name`'s); returns their names.
    Such a folder holds no committed rows: creation writes the schema before anything else, and a
    drop that got as far as deleting the schema was already off the catalogue."""
    root = collections_folder(data_dir)
    candidates = [root / name] if name is not None else sorted(root.iterdir()) if root.is_dir() else []
    removed = []
    for folder in candidates:
        if folder.is_dir() and not (folder / SCHEMA_FILE).exists():
            shutil.rmtree(folder)
            removed.append(folder.name)
    if removed:
        log.warning("removed unfinished collection folders (an interrupted create or drop): %s", removed)
    return removed


def manifest_problem(folder: Path) -> str | None:
    """Why a collection's manifest cannot be trusted, or None when it can (or has not been written)."""
    manifest, previous = folder / MANIFEST_FILE, folder / PREVIOUS_MANIFEST_FILE
    if not manifest.exists():
        if previous.exists():  # saving never removes the manifest: something else did
            return f"index file {manifest} is missing (only {previous.name} is there)"
        return None
    try:
        payload = json.loads(manifest.read_bytes())
    except (OSError, ValueError) as error:  # UnicodeDecodeError is a ValueError
        return f"index file {manifest} is corrupt: {error}"
    if not isinstance(payload, dict) or not isinstance(payload.get("partitions"), dict):
        return f"index file {manifest} is corrupt: not a Milvus Lite manifest (no 'partitions' table)"
    return None


def refused_folder(data_dir: Path) -> Path:
    return data_dir / "refused"


def corrupt_collections(data_dir: Path) -> dict[str, str]:
    """Collection name -> what is wrong with its manifest, for every collection whose manifest is bad.

    Such collections are moved aside (see above) so the library never opens them; set-aside collections
    whose manifest has been restored move back."""
    root, aside = collections_folder(data_dir), refused_folder(data_dir)
    for folder in sorted(aside.iterdir()) if aside.is_dir() else []:
        if manifest_problem(folder) is None and not (root / folder.name).exists():
            folder.rename(root / folder.name)
            log.warning("collection %s: its manifest was restored; serving it again", folder.name)
    problems = {}
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.is_dir() and (folder / SCHEMA_FILE).exists():
            problem = manifest_problem(folder)
            if problem is not None:
                aside.mkdir(exist_ok=True)
                folder.rename(aside / folder.name)
                problems[folder.name] = (
                    f"{problem} (the collection is set aside untouched in {aside / folder.name})"
                )
    for folder in sorted(aside.iterdir()) if aside.is_dir() else []:
        if folder.name not in problems:
            problems[folder.name] = manifest_problem(folder) or f"collection folder {folder} is set aside"
    for name, problem in problems.items():
        log.error("collection %s refused: %s", name, problem)
    return problems


def discard_refused(data_dir: Path, name: str) -> None:
    """Deletes a set-aside collection: dropping is how a caller gives it up."""
    folder = refused_folder(data_dir) / name
    if folder.is_dir():
        shutil.rmtree(folder)
