"""The blocking and the asyncio Python client are one API: every method of one has a twin in the other with
the same parameters, and the same calls give the same results (responses and errors) from a real server."""

from __future__ import annotations

import asyncio
import inspect
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf.json_format import MessageToDict

from crossmodal import AsyncCrossModalClient, CrossModalClient
from tests.fixtures.server import encoded_image, free_port
from tools import local_server

IMAGE = encoded_image(64, 48, "PNG", seed=3)

# (method, positional arguments, keyword arguments), called in this order by each client.
INFERENCE_CALLS = [
    ("encode", ([IMAGE, "a dog in the snow", "两只狗"],), {}),
    ("encode", (["a dog"],), {"model": "clip", "version": 1}),
    ("compare", ([IMAGE, "a dog"], ["a dog", "一只猫在桌子上"]), {}),
    ("classify", ([IMAGE], ["dog", "cat", "car"]), {"prompt_template": "a photo of {}", "top_k": 2}),
    ("translate", (["在雪地里有两条狗", "夜晚的伦敦"],), {"num_beams": 3, "num_hypotheses": 2}),
    ("repository_index", (), {}),
    ("repository_index", (), {"ready_only": True}),
    ("encode", (["a dog"],), {"model": "no_such_pipeline"}),
    ("compare", ([b"not an image"], ["a dog"]), {}),
]

TOWER = "clip_text"
LIFECYCLE_CALLS = [
    ("load_model", (TOWER,), {}),
    ("repository_index", (), {"ready_only": True}),
    ("unload_model", (TOWER,), {}),
    ("repository_index", (), {"ready_only": True}),
    ("load_model", ("no_such_model",), {}),
]


def public_methods(cls: type) -> dict[str, object]:
    return {name: method for name, method in inspect.getmembers(cls, callable) if not name.startswith("_")}


def outcome(call) -> dict:
    """A response as a plain dict, or the status a failed call ended with."""
    try:
        return MessageToDict(call(), preserving_proto_field_name=True)
    except grpc.RpcError as error:
        return {"code": error.code().name, "details": error.details()}


async def awaited_outcome(call) -> dict:
    try:
        return MessageToDict(await call(), preserving_proto_field_name=True)
    except grpc.RpcError as error:
        return {"code": error.code().name, "details": error.details()}


def blocking_outcomes(address: str, calls) -> list[dict]:
    with CrossModalClient(address, timeout=60) as client:
        return [outcome(lambda m=m, a=a, k=k: getattr(client, m)(*a, **k)) for m, a, k in calls]


async def awaited_outcomes(address: str, calls) -> list[dict]:
    async with AsyncCrossModalClient(address, timeout=60) as client:
        return [await awaited_outcome(lambda m=m, a=a, k=k: getattr(client, m)(*a, **k)) for m, a, k in calls]


def assert_same(awaited, blocking, where: str = "response") -> None:
    """Equal structure and values; floats within float32 noise (each call runs the models again)."""
    assert type(awaited) is type(blocking), where
    if isinstance(blocking, dict):
        assert awaited.keys() == blocking.keys(), where
        for key in blocking:
            assert_same(awaited[key], blocking[key], f"{where}.{key}")
    elif isinstance(blocking, list):
        assert len(awaited) == len(blocking), where
        for i, (a, b) in enumerate(zip(awaited, blocking, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(blocking, float):
        assert awaited == pytest.approx(blocking, rel=1e-5, abs=1e-6), where
    else:
        assert awaited == blocking, where


def test_every_blocking_method_has_an_async_twin_with_the_same_parameters():
    blocking, awaited = public_methods(CrossModalClient), public_methods(AsyncCrossModalClient)
    assert blocking.keys() == awaited.keys()
    expected = {"encode", "translate", "load_model", "unload_model", "wait_until_ready", "close"}
    assert expected <= blocking.keys()
    for name, method in blocking.items():
        assert not inspect.iscoroutinefunction(method), name
        assert inspect.iscoroutinefunction(awaited[name]), name
        assert inspect.signature(awaited[name]) == inspect.signature(method), name


def test_bound_methods_show_their_parameters():
    with CrossModalClient("127.0.0.1:1") as client:
        parameters = list(inspect.signature(client.classify).parameters)
    assert parameters == ["items", "labels", "prompt_template", "top_k", "model", "version"]
    assert "`top_k` items nearest" in CrossModalClient.search.__doc__


def test_both_clients_give_the_same_results(server_address):
    blocking = blocking_outcomes(server_address, INFERENCE_CALLS)
    awaited = asyncio.run(awaited_outcomes(server_address, INFERENCE_CALLS))
    assert_same(awaited, blocking)
    # The calls did reach the models: embeddings, a translation and the two failures came back.
    assert len(blocking[0]["embeddings"]) == 3 and blocking[4]["results"][0]["translations"]
    assert [o.get("code") for o in blocking[-2:]] == ["NOT_FOUND", "INVALID_ARGUMENT"]


def ready(index: dict) -> set[tuple[str, str]]:
    return {(m["name"], m.get("version", "0")) for m in index.get("models", [])}


def test_load_unload_and_wait_until_ready_alike_in_explicit_mode(repository_copy, tmp_path):
    port = free_port()
    address = f"127.0.0.1:{port}"

    async def wait_until_ready() -> float:
        async with AsyncCrossModalClient(address) as client:
            await client.wait_until_ready(timeout=180)
        return time.monotonic()

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(asyncio.run, wait_until_ready())
        time.sleep(0.5)
        assert not waiting.done()  # nothing listens yet
        served = local_server.running_server(
            repository_copy, "127.0.0.1", port, "--model-control-mode", "explicit", log_path=tmp_path / "log"
        )
        launched = time.monotonic()
        with served:
            assert waiting.result(timeout=180) >= launched
            blocking = blocking_outcomes(address, LIFECYCLE_CALLS)
            awaited = asyncio.run(awaited_outcomes(address, LIFECYCLE_CALLS))

    assert_same(awaited, blocking)
    loaded, while_loaded, unloaded, after, missing = blocking
    assert {(m["version"], m["state"]) for m in loaded["models"]} == {("1", "READY"), ("2", "READY")}
    assert {(TOWER, "1"), (TOWER, "2")} <= ready(while_loaded)
    assert unloaded == {}
    assert not {name for name, _ in ready(after)} & {TOWER}
    assert missing["code"] == "NOT_FOUND"


def test_wait_until_ready_raises_alike_when_nothing_listens():
    address = f"127.0.0.1:{free_port()}"

    async def wait_until_ready():
        async with AsyncCrossModalClient(address) as client:
            await client.wait_until_ready(timeout=0.5)

    with CrossModalClient(address) as client, pytest.raises(grpc.FutureTimeoutError) as blocking:
        client.wait_until_ready(timeout=0.5)
    begun = time.monotonic()
    with pytest.raises(type(blocking.value)):
        asyncio.run(wait_until_ready())
    assert time.monotonic() - begun < 10
