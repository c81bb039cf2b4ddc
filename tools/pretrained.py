"""Exports the pretrained models into a model repository as a new version of each model.

  clip_vision/<v>/, clip_text/<v>/   from openai/clip-vit-base-patch32 (tools.export_clip)
  opus_mt_zh_en/<w>/                 from Helsinki-NLP/opus-mt-zh-en (tools.export_marian)
  clip/config.pbtxt                  the pipeline, written when absent, naming opus_mt_zh_en as translator

<v> is one number for both towers (a pipeline version must exist in both): the newest version of either
tower plus one. The translator gets its own next version <w>. --version N writes version N of all three
and refuses to overwrite an existing version folder. Everything is exported into a staging folder first,
so the repository only changes once every export has succeeded.

Sources are hub ids (downloaded into the Hugging Face cache on first use, which needs internet access to
the hub) or local checkpoint folders in hub layout. Each source is checked before any export starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from crossmodal.v1 import model_config_pb2 as mc
from server.core.errors import ModelLoadError
from server.pipelines.kinds import PIPELINE_KINDS
from server.repository.model_config import load_model_config, parse_model_config
from server.repository.specs import VersionPolicy, pipeline_spec
from server.repository.versions import discover_versions, select_versions
from tools.export_clip import export_clip
from tools.export_marian import export_marian, name_translator
from tools.pbtxt import write_config

log = logging.getLogger(__name__)

CLIP_ID = "openai/clip-vit-base-patch32"
MARIAN_ID = "Helsinki-NLP/opus-mt-zh-en"
VISION = "clip_vision"
TEXT = "clip_text"
TRANSLATOR = "opus_mt_zh_en"
PIPELINE = "clip"
HUB_TIMEOUT_S = 15.0
EXIT_REFUSED = 2
DOWNLOAD_FAILED = "could not download"


class Refused(Exception):
    """A check before the export failed; the message is meant for the user as is."""


@dataclass(frozen=True)
class Source:
    label: str  # how the message names the model
    option: str  # the command-line option that sets it
    checkpoint: str
    model_type: str  # `model_type` its config.json must have


@dataclass
class Written:
    name: str
    version: int
    folder: Path
    files: list[str]
    source: str
    policy: str


@dataclass
class Report:
    repository: Path
    written: list[Written] = field(default_factory=list)
    pipeline: dict[str, str] = field(default_factory=dict)
    pipeline_created: bool = False


# ---------------------------------------------------------------------------------------------------------
# Sources


def _looks_like_path(checkpoint: str) -> bool:
    """A hub id is `name` or `namespace/name`; anything else is meant as a folder."""
    return (
        checkpoint.startswith((".", "/", "~"))
        or checkpoint.count("/") > 1
        or (os.sep != "/" and os.sep in checkpoint)
        or Path(checkpoint).expanduser().exists()
    )


def _hub_failure(error: Exception, timeout: float) -> str:
    """Why the hub could not be reached, in one line."""
    import requests
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    endpoint = constants.ENDPOINT
    if isinstance(error, GatedRepoError):
        return "the repository is gated: accept its terms on the hub and set HF_TOKEN"
    if isinstance(error, RepositoryNotFoundError):
        return f"no such model on {endpoint} (HTTP 404, or 401 for a private one without a token)"
    if isinstance(error, OfflineModeIsEnabled):
        return "offline mode is on (HF_HUB_OFFLINE is set)"
    if isinstance(error, requests.exceptions.Timeout):
        return f"{endpoint} did not answer within {timeout:g} s"
    if isinstance(error, requests.exceptions.ConnectionError):
        return f"cannot connect to {endpoint} (no network, DNS failure or proxy)"
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else "?"
        return f"{endpoint} answered HTTP {status}"
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}"


def check_source(source: Source, timeout: float = HUB_TIMEOUT_S) -> str | None:
    """None when the source is usable, else why not (one line). A local folder skips the hub."""
    path = Path(source.checkpoint).expanduser()
    if path.is_dir():
        return _check_config(source, path / "config.json")
    if _looks_like_path(source.checkpoint):
        return f"{source.label} checkpoint {source.checkpoint!r}: no such folder"

    from huggingface_hub import model_info
    from huggingface_hub.errors import HFValidationError

    try:
        info = model_info(source.checkpoint, timeout=timeout)
    except HFValidationError:
        return (
            f"{source.label} checkpoint {source.checkpoint!r} is neither a local folder nor a hub id "
            "(namespace/name)"
        )
    except Exception as error:  # every failure to reach the hub ends in the same message
        reason = _hub_failure(error, timeout)
        return f"{DOWNLOAD_FAILED} the {source.label} model {source.checkpoint!r} from the hub: {reason}"
    model_type = (info.config or {}).get("model_type")
    if model_type and model_type != source.model_type:
        return (
            f"{source.label} model {source.checkpoint!r} is a {model_type!r} model, not {source.model_type!r}"
        )
    return None


def _check_config(source: Source, config_path: Path) -> str | None:
    import json

    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except FileNotFoundError:
        return f"{source.label} checkpoint folder {config_path.parent} has no config.json"
    except (OSError, ValueError, AttributeError) as error:
        return f"{source.label} checkpoint folder {config_path.parent}: unreadable config.json ({error})"
    if model_type != source.model_type:
        return (
            f"{source.label} checkpoint folder {config_path.parent} holds a {model_type!r} model, "
            f"not {source.model_type!r}"
        )
    return None


def check_sources(sources: list[Source], timeout: float = HUB_TIMEOUT_S) -> None:
    """Raises Refused with one message naming every source that cannot be used."""
    problems = [problem for source in sources if (problem := check_source(source, timeout))]
    if not problems:
        return
    lines = [f"error: {problem}" for problem in problems]
    if any(problem.startswith(DOWNLOAD_FAILED) for problem in problems):
        options = " / ".join(s.option for s in sources)
        lines.append(
            "This command needs internet access to the Hugging Face hub to download the models, or a "
            f"local checkpoint folder (transformers layout) given with {options}."
        )
    raise Refused("\n".join(lines))


# ---------------------------------------------------------------------------------------------------------
# Versions


def existing_versions(repository: Path, name: str) -> list[int]:
    model_dir = repository / name
    return discover_versions(model_dir) if model_dir.is_dir() else []


def _existing_policy(repository: Path, name: str) -> mc.ModelVersionPolicy | None:
    """The version_policy of the current config.pbtxt, if it sets one."""
    path = repository / name / "config.pbtxt"
    if not path.is_file():
        return None
    try:
        config = parse_model_config(path.read_text(encoding="utf-8"), str(path))
    except (OSError, ModelLoadError) as error:
        raise Refused(f"error: cannot read {path}: {error}") from error
    return config.version_policy if config.HasField("version_policy") else None


def _policy_with(policy: mc.ModelVersionPolicy | None, version: int) -> mc.ModelVersionPolicy | None:
    """The policy the new config keeps: the current one, with a `specific` list extended by `version`."""
    if policy is None:
        return None
    kept = mc.ModelVersionPolicy()
    kept.CopyFrom(policy)
    if kept.WhichOneof("policy_choice") == "specific" and version not in kept.specific.versions:
        kept.specific.versions.append(version)
    return kept


def describe_policy(policy: mc.ModelVersionPolicy | None) -> str:
    choice = policy.WhichOneof("policy_choice") if policy is not None else None
    if choice == "all":
        return "all versions"
    if choice == "specific":
        return "versions " + ", ".join(str(v) for v in sorted(policy.specific.versions))
    if choice == "latest":
        return f"newest {policy.latest.num_versions}"
    return "newest only (no version_policy: Triton's default)"


def plan_versions(repository: Path, version: int | None = None) -> dict[str, int]:
    """The version each model gets: both towers share one, the translator has its own."""
    towers = existing_versions(repository, VISION) + existing_versions(repository, TEXT)
    translator = existing_versions(repository, TRANSLATOR)
    if version is None:
        tower_version = max(towers, default=0) + 1
        plan = {VISION: tower_version, TEXT: tower_version, TRANSLATOR: max(translator, default=0) + 1}
    else:
        if version < 1:
            raise Refused("error: --version must be a positive integer")
        plan = {VISION: version, TEXT: version, TRANSLATOR: version}
    for name, number in plan.items():
        folder = repository / name / str(number)
        if folder.exists():
            raise Refused(
                f"error: {folder} already exists; choose another --version, leave it out for the next "
                "free one, or remove that folder"
            )
        policy = _policy_with(_existing_policy(repository, name), number)
        try:
            available = sorted({*existing_versions(repository, name), number})
            wanted = VersionPolicy.from_proto(policy or mc.ModelVersionPolicy())
            served = select_versions(available, wanted, name)
        except ModelLoadError as error:
            raise Refused(f"error: {error}") from error
        if number not in served:
            raise Refused(
                f"error: {name} would not serve version {number}: its config.pbtxt serves "
                f"{describe_policy(policy)} and version {max(served)} is newer; leave --version out "
                "for the next free one"
            )
    return plan


def _check_pipeline(repository: Path) -> None:
    path = repository / PIPELINE / "config.pbtxt"
    if not path.is_file():
        return
    try:
        spec = pipeline_spec(load_model_config(repository / PIPELINE), PIPELINE_KINDS)
    except ModelLoadError as error:
        raise Refused(f"error: {error}") from error
    towers = (spec.parts.get("vision"), spec.parts.get("text"))
    if towers != (VISION, TEXT):
        raise Refused(
            f"error: pipeline {PIPELINE!r} ({path}) names vision_model={towers[0]!r}, "
            f"text_model={towers[1]!r}; this command writes {VISION} and {TEXT}"
        )


# ---------------------------------------------------------------------------------------------------------
# Export


def _install(stage: Path, repository: Path, name: str, version: int, source: str) -> Written:
    """Moves a staged version into the repository and writes the exporter's config, keeping the current
    version_policy (a `specific` list gains the new version)."""
    staged_config = load_model_config(stage / name)
    policy = _policy_with(_existing_policy(repository, name), version)
    if policy is not None:
        staged_config.version_policy.CopyFrom(policy)
    target = repository / name / str(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(stage / name / str(version)), str(target))
    write_config(repository / name, staged_config)
    return Written(
        name=name,
        version=version,
        folder=target,
        files=sorted(p.name for p in target.iterdir()),
        source=source,
        policy=describe_policy(policy),
    )


def _hint(source: str) -> str:
    return "" if Path(source).is_dir() else " (downloaded into the Hugging Face cache on first use)"


def export_pretrained(
    repository: Path,
    clip: str = CLIP_ID,
    marian: str = MARIAN_ID,
    version: int | None = None,
    kind: str = "cpu",
    keep_merged: bool = False,
    hub_timeout: float = HUB_TIMEOUT_S,
) -> Report:
    """Exports `clip` and `marian` into `repository` as new versions; raises Refused before any export
    when a source or the repository is not usable."""
    repository = Path(repository)
    if repository.exists() and not repository.is_dir():
        raise Refused(f"error: --repository {repository} is not a folder")
    plan = plan_versions(repository, version)
    _check_pipeline(repository)
    check_sources(
        [
            Source("CLIP", "--clip", clip, "clip"),
            Source("translator", "--marian", marian, "marian"),
        ],
        hub_timeout,
    )
    clip_source = str(Path(clip).expanduser()) if Path(clip).expanduser().is_dir() else clip
    marian_source = str(Path(marian).expanduser()) if Path(marian).expanduser().is_dir() else marian

    repository.mkdir(parents=True, exist_ok=True)
    report = Report(repository)
    # Staged inside the repository (same file system); the server ignores it: it has no config.pbtxt.
    with tempfile.TemporaryDirectory(dir=repository, prefix=".pretrained-") as tmp:
        stage = Path(tmp)
        log.info("exporting %s as %s/%s version %d%s", clip, VISION, TEXT, plan[VISION], _hint(clip_source))
        export_clip(clip_source, stage, plan[VISION], VISION, TEXT, PIPELINE, kind)
        log.info(
            "exporting %s as %s version %d%s", marian, TRANSLATOR, plan[TRANSLATOR], _hint(marian_source)
        )
        export_marian(marian_source, stage, plan[TRANSLATOR], TRANSLATOR, kind, keep_merged)

        for name, source in ((VISION, clip), (TEXT, clip), (TRANSLATOR, marian)):
            report.written.append(_install(stage, repository, name, plan[name], source))
        if not (repository / PIPELINE / "config.pbtxt").is_file():
            write_config(repository / PIPELINE, load_model_config(stage / PIPELINE))
            report.pipeline_created = True
    name_translator(repository, PIPELINE, TRANSLATOR)
    pipeline = load_model_config(repository / PIPELINE)
    report.pipeline = {key: value.string_value for key, value in sorted(pipeline.parameters.items())}
    return report


# ---------------------------------------------------------------------------------------------------------
# Command line


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:  # another drive
        return str(path)


def format_report(report: Report) -> str:
    repository = _shown(report.repository)
    lines = [f"Exported into {repository}:"]
    width = max(len(w.name) for w in report.written)
    for w in report.written:
        lines.append(
            f"  {w.name:<{width}}  version {w.version}  {_shown(w.folder)}/  from {w.source}\n"
            f"  {'':<{width}}  files: {', '.join(w.files)}"
        )
    pipeline = ", ".join(f"{key}={value}" for key, value in report.pipeline.items())
    state = "written" if report.pipeline_created else "updated"
    lines.append(f"Pipeline {PIPELINE!r} ({state}): {pipeline}")
    lines.append("Versions served by each config.pbtxt:")
    for w in report.written:
        lines.append(f"  {w.name:<{width}}  {w.policy}")
    if any(w.policy.startswith("newest only") for w in report.written):
        lines.append(
            "  (newest only: the new version replaces the older ones, which stay on disk; add a "
            "version_policy to config.pbtxt to serve several)"
        )
    python = _shown(Path(sys.executable))
    lines += [
        "Serve it:",
        f"  make serve MODEL_REPOSITORY={shlex.quote(repository)}",
        f"  {shlex.quote(python)} -m server --model-repository {shlex.quote(repository)}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.pretrained",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repository", type=Path, required=True, help="model repository to write into")
    parser.add_argument(
        "--clip",
        default=CLIP_ID,
        help=f"CLIP checkpoint: a hub id or a local folder (default: {CLIP_ID})",
    )
    parser.add_argument(
        "--marian",
        default=MARIAN_ID,
        help=f"zh->en Marian checkpoint: a hub id or a local folder (default: {MARIAN_ID})",
    )
    parser.add_argument(
        "--version",
        type=int,
        help="version to write for all three models (default: the next free one: towers share "
        "max(clip_vision, clip_text)+1, the translator its own)",
    )
    parser.add_argument(
        "--kind", choices=["cpu", "gpu"], default="cpu", help="instance_group kind to write (default: cpu)"
    )
    parser.add_argument(
        "--keep-merged",
        action="store_true",
        help="also keep decoder_model_merged.onnx (the server uses the separate decoders when present)",
    )
    parser.add_argument(
        "--hub-timeout",
        type=float,
        default=HUB_TIMEOUT_S,
        help=f"seconds to wait for the hub when checking a hub id (default: {HUB_TIMEOUT_S:g})",
    )
    args = parser.parse_args(argv)
    if args.version is not None and args.version < 1:
        parser.error("--version must be a positive integer")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = export_pretrained(
            args.repository,
            args.clip,
            args.marian,
            args.version,
            args.kind,
            args.keep_merged,
            args.hub_timeout,
        )
    except Refused as refusal:
        print(refusal, file=sys.stderr)
        return EXIT_REFUSED
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
