"""Model versions change under constant load (--model-control-mode poll): no call fails, responses move to
the new version, and a broken version is reported while the previous one keeps serving."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter

import grpc
import pytest

from crossmodal import CrossModalClient
from tests.fixtures.server import ROOT, encoded_image, running_server

TOWERS = ("clip_vision", "clip_text")


def stage_version(model_dir, source: int, version: int, corrupt: bool = False) -> None:
    """Copies a version folder under a temporary name, then renames it: a poll never sees half a copy."""
    staging = model_dir / f".staging-{version}"
    shutil.copytree(model_dir / str(source), staging)
    if corrupt:
        (staging / "model.onnx").write_bytes(b"this is not an ONNX graph")
    staging.rename(model_dir / str(version))


class ConstantLoad:
    """Threads calling Compare (image vs texts, English and Chinese) until stopped; records every outcome."""

    def __init__(self, address: str, threads: int = 3) -> None:
        self.address = address
        self.failures: list[str] = []
        self.versions: Counter = Counter()
        self.calls = 0
        self._last: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> ConstantLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def latest_versions(self) -> set[int]:
        with self._lock:
            return set(self._last)

    def _run(self, seed: int) -> None:
        image = encoded_image(48, 40, seed=seed)
        with CrossModalClient(self.address, timeout=30) as client:
            while not self._stop.is_set():
                try:
                    reply = client.compare([image], ["a dog in the snow", "两只狗"])
                    versions = {m.version for m in reply.model.models if m.name in TOWERS}
                    with self._lock:
                        self.calls += 1
                        self.versions[frozenset(versions)] += 1
                        self._last = versions
                except grpc.RpcError as error:
                    with self._lock:
                        self.failures.append(f"{error.code().name}: {error.details()}")


def wait_for(condition, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting until {what}")


@pytest.fixture
def repository(tmp_path):
    copy = tmp_path / "repository"
    shutil.copytree(ROOT / "model_repository", copy)
    return copy


def states(client: CrossModalClient) -> dict[tuple[str, int], tuple[str, str]]:
    return {(m.name, m.version): (m.state, m.reason) for m in client.repository_index().models}


def test_versions_replaced_and_broken_under_load_without_a_failed_call(repository):
    args = ("--model-control-mode", "poll", "--repository-poll-secs", "0.3")
    with running_server(repository, *args) as (address, _), CrossModalClient(address) as admin:
        with ConstantLoad(address) as load:
            wait_for(lambda: load.calls >= 5, "calls flow")
            assert load.latest_versions() == {1}

            for tower in TOWERS:  # one tower after the other, as a copy to a server happens
                stage_version(repository / tower, 1, 2)
                time.sleep(0.5)
            wait_for(lambda: load.latest_versions() == {2}, "responses come from version 2")
            wait_for(lambda: all((t, 1) not in states(admin) for t in TOWERS), "version 1 is unloaded")
            for tower in TOWERS:
                shutil.rmtree(repository / tower / "1")

            stage_version(repository / "clip_text", 2, 3)
            stage_version(repository / "clip_vision", 2, 3, corrupt=True)
            wait_for(lambda: states(admin).get(("clip_vision", 3), ("",))[0] == "UNAVAILABLE", "v3 fails")
            time.sleep(1.0)  # calls keep flowing meanwhile
            calls_before = load.calls
            wait_for(lambda: load.calls > calls_before + 3, "calls still flow")

        index = states(admin)
        assert "cannot load model.onnx" in index[("clip_vision", 3)][1]
        assert index[("clip_vision", 2)][0] == "READY"  # kept: the pipeline still needs it
        assert load.latest_versions() == {2}
    assert load.failures == []
    print(f"{load.calls} calls: {dict(load.versions)}")
    assert load.versions[frozenset({1})] > 0 and load.versions[frozenset({2})] > 0
    assert set(load.versions) <= {frozenset({1}), frozenset({2})}  # never a mix of towers
