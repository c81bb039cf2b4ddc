"""A new model kind is one module and one registry line: the mean-pooling text embedder of
tests/fixtures/mean_pooling.py, registered for this test only, serves in a pipeline beside the CLIP image
tower through crossmodal.v1, and on its own through the KServe v2 protocol, with nothing else changed."""

from __future__ import annotations

import shutil
import struct

import grpc
import numpy as np
import pytest

from crossmodal.client import CrossModalClient
from inference import grpc_service_pb2 as kpb
from inference import grpc_service_pb2_grpc as kpb_grpc
from server.backends import registry
from tests.fixtures.images import encoded_image
from tests.fixtures.mean_pooling import MeanPoolingTextEmbedder, write_mean_pooling_model
from tests.fixtures.server import in_process_server
from tools.build_tiny_clip import PRESETS

WORDS = ["a", "dog", "in", "the", "snow", "two", "cats", "on", "table"]
LOGIT_SCALE = 50.0  # not CLIP's 100: the pipeline must take it from the text embedder


@pytest.fixture
def example_repository(exported_repository, tmp_path):
    """clip_vision from the tiny export, the example text model, and a pipeline naming both."""
    repository = tmp_path / "model_repository"
    shutil.copytree(exported_repository / "clip_vision", repository / "clip_vision")
    dim = PRESETS["tiny"].projection_dim  # the size of the exported image tower's embeddings
    model = repository / "mean_text"
    table, projection = write_mean_pooling_model(model / "1", WORDS, hidden=24, dim=dim)
    (model / "config.pbtxt").write_text(
        'name: "mean_text"\n'
        f'platform: "{MeanPoolingTextEmbedder.platform}"\n'
        "max_batch_size: 8\n"
        "dynamic_batching { }\n"
        'parameters { key: "model_type" value { string_value: "mean_pooling_text" } }\n'
        f'parameters {{ key: "logit_scale" value {{ string_value: "{LOGIT_SCALE}" }} }}\n'
    )
    (repository / "clip_mean").mkdir()
    (repository / "clip_mean" / "config.pbtxt").write_text(
        'name: "clip_mean"\nplatform: "crossmodal_pipeline"\n'
        'parameters { key: "vision_model" value { string_value: "clip_vision" } }\n'
        'parameters { key: "text_model" value { string_value: "mean_text" } }\n'
    )
    return repository, table, projection


@pytest.fixture
def served(example_repository, monkeypatch):
    kind = MeanPoolingTextEmbedder
    monkeypatch.setitem(registry.BACKENDS, (kind.platform, kind.model_type), kind)  # the one registry line
    repository, table, projection = example_repository
    with in_process_server(repository, default_pipeline="clip_mean") as server:
        yield server, table, projection


def reference(table, projection, texts: list[str]) -> np.ndarray:
    """Each text's word vectors averaged, projected and normalised, one text at a time (no padding)."""
    vocabulary = {w: i for i, w in enumerate(["[unk]", *WORDS])}
    vectors = []
    for text in texts:
        pooled = table[[vocabulary.get(w, 0) for w in text.lower().split()]].mean(axis=0) @ projection
        vectors.append(pooled / np.linalg.norm(pooled))
    return np.array(vectors)


def test_the_example_backend_serves_in_a_pipeline_through_crossmodal_v1(served):
    server, table, projection = served
    texts = ["a dog in the snow", "two cats on the table", "a zebra"]  # "zebra": an unknown word
    with CrossModalClient(server.address) as client:
        encoded = client.encode(texts, model="clip_mean")
        embeddings = np.array([e.values for e in encoded.embeddings])
        assert embeddings.shape == (3, PRESETS["tiny"].projection_dim)
        np.testing.assert_allclose(embeddings, reference(table, projection, texts), atol=1e-6)
        assert [(m.name, m.version) for m in encoded.model.models] == [("clip_vision", 1), ("mean_text", 1)]

        image = encoded_image(40, 30)
        compared = client.compare([image], texts, model="clip_mean")
        image_vector = np.array(client.encode([image], model="clip_mean").embeddings[0].values)
        cosine = embeddings @ image_vector
        np.testing.assert_allclose(compared.similarity, cosine, atol=1e-5)
        logits = LOGIT_SCALE * cosine
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(compared.probabilities, expected, atol=1e-5)

        index = {(m.name, m.version): m.state for m in client.repository_index().models}
        assert index[("mean_text", 1)] == "READY"


def infer_request(model: str, ids: np.ndarray, mask: np.ndarray) -> kpb.ModelInferRequest:
    tensors = [
        kpb.ModelInferRequest.InferInputTensor(name=name, datatype="INT64", shape=array.shape)
        for name, array in (("input_ids", ids), ("attention_mask", mask))
    ]
    raw = [ids.astype("<i8").tobytes(), mask.astype("<i8").tobytes()]
    return kpb.ModelInferRequest(model_name=model, inputs=tensors, raw_input_contents=raw)


def test_the_example_backend_serves_through_kserve_from_its_signature(served):
    server, table, projection = served
    with grpc.insecure_channel(server.address) as channel:
        stub = kpb_grpc.GRPCInferenceServiceStub(channel)
        metadata = stub.ModelMetadata(kpb.ModelMetadataRequest(name="mean_text"))
        dim = projection.shape[1]
        assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
            ("input_ids", "INT64", [-1, -1]),
            ("attention_mask", "INT64", [-1, -1]),
        ]
        assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
            ("text_embeds", "FP32", [-1, dim])
        ]
        assert stub.ModelReady(kpb.ModelReadyRequest(name="mean_text")).ready

        ids = np.array([[2, 3, 4, 0], [6, 7, 0, 0]])
        mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
        response = stub.ModelInfer(infer_request("mean_text", ids, mask))
        assert response.model_version == "1"
        vectors = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(2, dim)
        expected = reference(table, projection, ["dog in the", "two cats"])  # the ids above, as words
        np.testing.assert_allclose(vectors, expected, atol=1e-6)

        # The pipeline's TEXT input reaches the same backend through the engine.
        texts = [b"a dog in the snow"]
        raw = b"".join(struct.pack("<I", len(t)) + t for t in texts)
        text = kpb.ModelInferRequest.InferInputTensor(name="TEXT", datatype="BYTES", shape=[1])
        piped = stub.ModelInfer(
            kpb.ModelInferRequest(model_name="clip_mean", inputs=[text], raw_input_contents=[raw])
        )
        embeds = np.frombuffer(piped.raw_output_contents[0], dtype="<f4").reshape(1, dim)
        np.testing.assert_allclose(embeds, reference(table, projection, ["a dog in the snow"]), atol=1e-6)

        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(infer_request("mean_text", np.array([[99]]), np.array([[1]])))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "token ids must be in 0..9" in refused.value.details()


def test_without_its_registry_line_the_kind_is_refused_by_name(example_repository):
    repository, _, _ = example_repository
    with in_process_server(repository, default_pipeline="clip_mean") as server:
        with CrossModalClient(server.address) as client:
            index = client.repository_index().models
        failures = [m for m in index if m.name == "mean_text"]
        assert failures and all(m.state == "UNAVAILABLE" for m in failures)
        assert all("unsupported platform 'numpy'" in m.reason for m in failures), failures
