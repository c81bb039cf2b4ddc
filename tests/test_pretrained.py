"""tools.pretrained: new versions of the CLIP towers and the translator, from local checkpoint folders."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format

from crossmodal.v1 import model_config_pb2 as mc
from server.backends.onnx.session import SessionFactory
from server.pipelines.clip import resolve_pipeline
from server.repository.repository import ModelRepository
from tools import pretrained
from tools.build_tiny_marian import build_tiny_marian
from tools.export_clip import export_clip
from tools.export_marian import export_marian, name_translator

ROOT = Path(__file__).resolve().parents[1]
ALL_VERSIONS = "version_policy { all {} }\n"


def read_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(encoding="utf-8"), mc.ModelConfig())


@pytest.fixture(scope="module")
def untrained_marian(tmp_path_factory) -> Path:
    return build_tiny_marian(tmp_path_factory.mktemp("untrained-marian"), train_steps=0)


@pytest.fixture(scope="module")
def repository_v1(tmp_path_factory, tiny_checkpoint, untrained_marian) -> Path:
    """Version 1 of both towers and the translator, and a `clip` pipeline naming the translator."""
    repository = tmp_path_factory.mktemp("pretrained") / "model_repository"
    export_clip(str(tiny_checkpoint), repository, version=1)
    export_marian(str(untrained_marian), repository, version=1, keep_merged=False)
    name_translator(repository, "clip", "opus_mt_zh_en")
    return repository


@pytest.fixture
def repository(repository_v1, tmp_path) -> Path:
    target = tmp_path / "model_repository"
    shutil.copytree(repository_v1, target)
    return target


def sources(tiny_checkpoint: Path, marian: Path) -> list[str]:
    return ["--clip", str(tiny_checkpoint), "--marian", str(marian)]


def test_exports_the_next_version_and_serves_it(repository, tiny_checkpoint, untrained_marian, capsys):
    # clip_text serves every version: that choice survives the exporter rewriting config.pbtxt.
    text_config = repository / "clip_text" / "config.pbtxt"
    text_config.write_text(text_config.read_text() + ALL_VERSIONS)

    status = pretrained.main(["--repository", str(repository), *sources(tiny_checkpoint, untrained_marian)])

    assert status == 0
    for tower, files in (
        ("clip_vision", {"model.onnx", "preprocessor_config.json"}),
        ("clip_text", {"model.onnx", "tokenizer.json"}),
    ):
        assert files <= {p.name for p in (repository / tower / "2").iterdir()}
    translator_files = {p.name for p in (repository / "opus_mt_zh_en" / "2").iterdir()}
    assert {
        "encoder_model.onnx",
        "decoder_model.onnx",
        "decoder_with_past_model.onnx",
        "source.spm",
        "target.spm",
        "vocab.json",
        "generation_config.json",
    } <= translator_files
    assert "decoder_model_merged.onnx" not in translator_files
    assert not list(repository.glob(".pretrained-*")), "the staging folder is removed"

    pipeline = read_config(repository / "clip" / "config.pbtxt")
    assert pipeline.parameters["translator"].string_value == "opus_mt_zh_en"
    assert pipeline.parameters["vision_model"].string_value == "clip_vision"
    assert pipeline.parameters["text_model"].string_value == "clip_text"
    assert not read_config(repository / "clip_vision" / "config.pbtxt").HasField("version_policy")
    assert read_config(text_config).version_policy.WhichOneof("policy_choice") == "all"

    served = ModelRepository(repository, SessionFactory())
    served.load_all()
    assert served.model("clip_vision", 0).version == 2
    assert served.model("clip_text", 0).version == 2
    assert served.model("opus_mt_zh_en", 0).version == 2
    assert served.ready_versions("clip_vision") == [2]
    assert served.ready_versions("clip_text") == [1, 2]
    assert served.ready_versions("opus_mt_zh_en") == [2]
    resolved = resolve_pipeline(served, "clip", 0)
    assert resolved.models == [("clip_vision", 2), ("clip_text", 2)]
    assert resolved.translator == "opus_mt_zh_en"

    out = capsys.readouterr().out
    for name in ("clip_vision", "clip_text", "opus_mt_zh_en"):
        assert re.search(rf"{name}\s+version 2\s+{re.escape(str(repository / name / '2'))}/", out)
    assert "version 2" in out
    assert "newest only" in out
    assert "translator=opus_mt_zh_en" in out
    assert f"-m server --model-repository {repository}" in out
    assert f"make serve MODEL_REPOSITORY={repository}" in out


def test_given_version_must_be_new(repository, tiny_checkpoint, untrained_marian, capsys):
    before = sorted(str(p.relative_to(repository)) for p in repository.rglob("*"))
    args = ["--repository", str(repository), "--version", "1", *sources(tiny_checkpoint, untrained_marian)]

    assert pretrained.main(args) == 2

    err = capsys.readouterr().err
    assert "already exists" in err
    assert sorted(str(p.relative_to(repository)) for p in repository.rglob("*")) == before


def make_versions(repository: Path, name: str, versions: list[int], policy: str = "") -> None:
    for version in versions:
        (repository / name / str(version)).mkdir(parents=True)
    config = f'name: "{name}"\nplatform: "onnxruntime_onnx"\n{policy}'
    (repository / name / "config.pbtxt").write_text(config)


def test_towers_share_the_next_version_and_the_translator_has_its_own(tmp_path):
    assert pretrained.plan_versions(tmp_path / "empty") == {
        "clip_vision": 1,
        "clip_text": 1,
        "opus_mt_zh_en": 1,
    }
    make_versions(tmp_path, "clip_vision", [1, 3])
    make_versions(tmp_path, "clip_text", [1, 2])
    make_versions(tmp_path, "opus_mt_zh_en", [1])
    assert pretrained.plan_versions(tmp_path) == {"clip_vision": 4, "clip_text": 4, "opus_mt_zh_en": 2}
    assert pretrained.plan_versions(tmp_path, 7) == {"clip_vision": 7, "clip_text": 7, "opus_mt_zh_en": 7}


def test_a_version_below_the_newest_must_be_served(tmp_path):
    make_versions(tmp_path, "clip_vision", [1, 3])
    make_versions(tmp_path, "clip_text", [1, 3], "version_policy { specific { versions: 1 } }\n")
    make_versions(tmp_path, "opus_mt_zh_en", [1], ALL_VERSIONS)
    with pytest.raises(pretrained.Refused, match="clip_vision would not serve version 2"):
        pretrained.plan_versions(tmp_path, 2)
    # A specific list gains the new version, `all` serves it anyway.
    make_versions(tmp_path / "ok", "clip_vision", [1, 3], ALL_VERSIONS)
    make_versions(tmp_path / "ok", "clip_text", [1, 3], "version_policy { specific { versions: 1 } }\n")
    assert pretrained.plan_versions(tmp_path / "ok", 2)["clip_text"] == 2


def test_missing_local_folder_is_refused(tmp_path, untrained_marian, capsys):
    args = ["--repository", str(tmp_path / "repo"), "--clip", str(tmp_path / "nope")]
    assert pretrained.main([*args, "--marian", str(untrained_marian)]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_wrong_model_type_is_refused(tmp_path, tiny_checkpoint, capsys):
    args = ["--repository", str(tmp_path / "repo"), "--clip", str(tiny_checkpoint)]
    assert pretrained.main([*args, "--marian", str(tiny_checkpoint)]) == 2
    assert "not 'marian'" in capsys.readouterr().err


def test_offline_hub_id_fails_with_one_clear_message(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.pretrained",
            "--repository",
            str(tmp_path / "repo"),
            "--clip",
            "some-org/does-not-exist",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "could not download the CLIP model 'some-org/does-not-exist'" in result.stderr
    assert "needs internet access to the Hugging Face hub" in result.stderr
    assert "--clip" in result.stderr and "--marian" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "repo").exists()
