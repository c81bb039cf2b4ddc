"""Version lifecycle without a network: leases keep a leaving version alive until its last call ends."""

from __future__ import annotations

import shutil
import time

import pytest
from prometheus_client import generate_latest

from server.backends.onnx.session import SessionFactory
from server.core.errors import InvalidInput, ModelNotFound, ModelNotReady
from server.core.types import TranslateOptions
from server.metrics import ServerMetrics
from server.protocols.grpc_v1.convert import repository_index
from server.repository.repository import ModelRepository, State
from tests.fixtures.server import ROOT


@pytest.fixture
def repository(tmp_path):
    copy = tmp_path / "repository"
    shutil.copytree(ROOT / "model_repository", copy)
    loaded = ModelRepository(copy, SessionFactory())
    loaded.load_all()
    yield loaded
    loaded.close()


def states(repository: ModelRepository, name: str) -> list[tuple[int, State]]:
    return [(s.version, s.state) for s in repository.statuses(name)]


def test_an_unloaded_version_serves_its_calls_in_flight_then_closes(repository):
    with repository.call_scope():
        model = repository.model("clip_text", 0)
        repository.unload_model("clip_text")
        assert states(repository, "clip_text") == [(1, State.UNLOADING)]
        with pytest.raises(ModelNotFound):
            repository.model("clip_text", 0)  # no new call gets it
        assert model.submit_texts(["still served"]).result().shape[0] == 1  # the call holding it goes on
    until_closed(repository, "clip_text")  # closed on the repository's closer thread, off the caller's
    with pytest.raises(ModelNotReady, match="shutting down"):
        model.submit_texts(["after the last call"])


def test_closing_the_repository_waits_for_the_versions_whose_last_call_just_ended(repository):
    with repository.call_scope():
        model = repository.model("clip_text", 0)
        repository.unload_model("clip_text")
    repository.close()
    assert states(repository, "clip_text") == []
    with pytest.raises(ModelNotReady, match="shutting down"):
        model.submit_texts(["after the repository closed"])


def until_closed(repository: ModelRepository, name: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while states(repository, name):
        assert time.monotonic() < deadline, f"{name} still listed: {states(repository, name)}"
        time.sleep(0.01)


def test_a_version_no_call_holds_closes_at_once(repository):
    model = repository.model("opus_mt_zh_en", 0)  # outside a call scope: no lease
    repository.unload_model("opus_mt_zh_en")
    assert states(repository, "opus_mt_zh_en") == []
    with pytest.raises(ModelNotReady):
        model.translate(["你好"], TranslateOptions())


def test_a_bad_config_keeps_the_loaded_versions_serving(repository):
    (repository.root / "clip_text" / "config.pbtxt").write_text("this is { not pbtxt")
    repository.load_model("clip_text")
    index = {(s.version, s.state): s.reason for s in repository.statuses("clip_text")}
    assert (1, State.READY) in index
    assert "invalid config.pbtxt" in index[(0, State.UNAVAILABLE)]
    assert repository.model("clip_text", 0).submit_texts(["a dog"]).result().shape[0] == 1


@pytest.mark.parametrize("name", ["../clip_text", "/etc/passwd", "..", "a/b", ""])
def test_model_names_cannot_leave_the_repository(repository, name):
    with pytest.raises(InvalidInput, match="plain folder name"):
        repository.load_model(name)


def test_a_model_whose_files_break_its_constructor_is_recorded_not_fatal(tmp_path):
    copy = tmp_path / "repository"
    shutil.copytree(ROOT / "model_repository", copy)
    generation = copy / "opus_mt_zh_en" / "1" / "generation_config.json"
    generation.write_text(generation.read_text().replace('"num_beams": ', '"num_beams": null, "x": '))
    broken = ModelRepository(copy, SessionFactory())
    broken.load_all()  # does not raise
    try:
        status = broken.statuses("opus_mt_zh_en")[0]
        assert status.state is State.UNAVAILABLE and "cannot load" in status.reason
        assert states(broken, "clip_text") == [(1, State.READY)]
    finally:
        broken.close()


def test_a_pipeline_config_fixed_after_a_failure_leaves_no_stale_entry(repository):
    metrics = ServerMetrics()
    metrics.watch_models(lambda: [(s.name, s.version, s.state.value) for s in repository.index()])
    config = repository.root / "clip" / "config.pbtxt"
    good = config.read_text()
    config.write_text("this is { not pbtxt")
    repository.load_model("clip")
    assert ("clip", State.UNAVAILABLE) in {(s.name, s.state) for s in repository.index()}
    config.write_text(good)
    repository.load_model("clip")
    assert [s for s in repository.index() if s.name == "clip"] == []
    entries = [(e.name, e.state) for e in repository_index(repository) if e.name == "clip"]
    assert entries == [("clip", "READY")]
    scraped = generate_latest(metrics.registry).decode()
    assert 'crossmodal_model_versions{model="clip"' not in scraped
