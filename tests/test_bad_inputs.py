"""Whatever clients send, each bad request gets its status code and a message naming the item and the reason,
and the server keeps answering a well-behaved client all the while."""

from __future__ import annotations

import io
import re
import struct
import tempfile
import threading
import time
import urllib.request
import zlib
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from crossmodal import CrossModalClient
from crossmodal.v1 import crossmodal_pb2 as pb
from inference import grpc_service_pb2 as kpb
from inference import grpc_service_pb2_grpc as kpb_grpc
from server.repository.model_config import load_model_config
from tests.fixtures.server import ROOT, encoded_image, free_port, running_server

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
LIMITS = ("--max-image-bytes", "200000", "--max-image-pixels", "4000000", "--max-text-chars", "2000")
MAX_MESSAGE_BYTES = "3000000"
LIMITS += ("--max-items", "256", "--max-message-bytes", MAX_MESSAGE_BYTES)
# The high-level RPCs of the contract, and the codes it gives bad input (UNAVAILABLE is for a server or
# model that is not ready, whatever the input).
CONTRACT_RPCS = {"Encode", "Compare", "Classify", "Translate"}
BAD_INPUT_CODES = {INVALID, EXHAUSTED, NOT_FOUND}

GOOD_PNG = encoded_image(32, 24)
DEFAULT_NBEST = 5  # translations per text when the request leaves num_hypotheses 0
TEXT_EMBEDDING_DIM = load_model_config(ROOT / "model_repository" / "clip_text").output[0].dims[-1]


def bomb_png(width: int = 60_000, height: int = 60_000) -> bytes:
    """A small valid PNG whose header announces a huge image (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def jpeg(size: int, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((size, size), 120).convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def image(data: bytes) -> pb.Item:
    return pb.Item(image=data)


def text(value: str) -> pb.Item:
    return pb.Item(text=value)


def encode(*items: pb.Item, name: str = "", version: int = 0):
    return "Encode", pb.EncodeRequest(model=pb.ModelSpec(name=name, version=version), items=list(items))


def compare(queries, candidates):
    return "Compare", pb.CompareRequest(queries=queries, candidates=candidates)


def classify(items, labels, template="", top_k=0):
    return "Classify", pb.ClassifyRequest(items=items, labels=labels, prompt_template=template, top_k=top_k)


def translate(texts, **options):
    return "Translate", pb.TranslateRequest(texts=texts, **options)


# (case, request, status, words the message must contain)
CASES = [
    ("corrupt image bytes", encode(image(b"\xff\xd8\xff" + bytes(range(256)) * 4)), INVALID, ["items[0]"]),
    ("truncated PNG", encode(text("ok"), image(GOOD_PNG[: len(GOOD_PNG) // 2])), INVALID, ["items[1]"]),
    ("zero-byte image", encode(image(b"")), INVALID, ["items[0]"]),
    ("image over the byte limit", encode(image(jpeg(700))), EXHAUSTED, ["items[0]", "200000"]),
    ("decompression bomb", encode(image(bomb_png())), EXHAUSTED, ["items[0]", "pixels"]),
    ("text bytes sent as an image", encode(image(b"hello, this is not an image")), INVALID, ["items[0]"]),
    ("HTML sent as an image", encode(image(b"<html><body>nope</body></html>")), INVALID, ["items[0]"]),
    (
        "a broken image among good ones",
        encode(image(GOOD_PNG), image(GOOD_PNG), image(b"x")),
        INVALID,
        ["items[2]"],
    ),
    (
        "broken compare candidate",
        compare([text("a")], [image(GOOD_PNG), image(b"??")]),
        INVALID,
        ["candidates[1]"],
    ),
    ("broken classify item", classify([image(b"GIF89a")], ["dog"]), INVALID, ["items[0]"]),
    ("empty text", encode(text("")), INVALID, ["items[0]", "empty"]),
    ("whitespace-only text", encode(text("ok"), text(" \t\n ")), INVALID, ["items[1]", "empty"]),
    (
        "zero-width-only text",
        encode(text("ok"), text("\u200b\u200c \u200d\u2060\ufeff")),
        INVALID,
        ["items[1]", "empty"],
    ),
    (
        "zero-width-only label",
        classify([text("a")], ["dog", "\u200b\u200b"]),
        INVALID,
        ["labels[1]", "empty"],
    ),
    ("zero-width-only text to translate", translate(["你好", "\ufeff"]), INVALID, ["texts[1]", "empty"]),
    (
        "invisible-only text (word joiner, soft hyphen, bidi override, NUL, a tag)",
        encode(text("ok"), text("\u2060\u00ad\u202e\x00\U000e0041")),
        INVALID,
        ["items[1]", "empty"],
    ),
    ("text over the character limit", encode(text("dog " * 600)), EXHAUSTED, ["items[0]", "2000"]),
    ("item with neither image nor text", encode(pb.Item()), INVALID, ["items[0]"]),
    ("thousands of items", encode(*[text("a dog")] * 3000), EXHAUSTED, ["items", "256"]),
    ("no items", encode(), INVALID, ["items"]),
    ("unknown pipeline", encode(text("a"), name="no_such_pipeline"), NOT_FOUND, ["no_such_pipeline"]),
    ("path as pipeline name", encode(text("a"), name="../clip"), NOT_FOUND, ["../clip"]),
    ("unknown version", encode(text("a"), version=99), NOT_FOUND, ["99"]),
    ("negative version", encode(text("a"), version=-1), INVALID, ["version"]),
    ("empty compare side", compare([text("a")], []), INVALID, ["candidates"]),
    ("classify without labels", classify([text("a")], []), INVALID, ["labels"]),
    ("classify with an empty label", classify([text("a")], ["dog", " "]), INVALID, ["labels[1]"]),
    ("negative top_k", classify([text("a")], ["dog"], top_k=-3), INVALID, ["top_k"]),
    ("template without placeholder", classify([text("a")], ["dog"], template="a photo"), INVALID, ["{}"]),
    ("negative beams", translate(["你好"], num_beams=-2), INVALID, ["num_beams"]),
    (
        "more hypotheses than beams",
        translate(["你好"], num_beams=2, num_hypotheses=5),
        INVALID,
        ["num_hypotheses"],
    ),
    ("absurd max_length", translate(["你好"], max_length=10**9), INVALID, ["max_length"]),
    # Options are checked before any text is prepared (jieba on 1024 long texts costs seconds).
    ("bad option before the texts' work", translate(["", "你好"], max_length=10**9), INVALID, ["max_length"]),
    ("absurd num_hypotheses", translate(["你好"], num_hypotheses=100_000), INVALID, ["num_hypotheses"]),
    ("NaN length penalty", translate(["你好"], length_penalty=float("nan")), INVALID, ["length_penalty"]),
    ("empty text to translate", translate(["你好", ""]), INVALID, ["texts[1]"]),
    # gRPC itself refuses it, before the server sees it; its message gives the limit's value.
    (
        "message over the size limit",
        encode(image(b"\x00" * 3_500_000)),
        EXHAUSTED,
        ["larger than max", MAX_MESSAGE_BYTES],
    ),
]


@pytest.fixture(scope="module")
def served():
    """(address, metrics port, log file) of the server under test."""
    metrics_port = free_port()
    with running_server(ROOT / "model_repository", *LIMITS, "--metrics-port", str(metrics_port)) as (
        address,
        _process,
    ):
        port = address.rsplit(":", 1)[1]
        yield address, metrics_port, Path(tempfile.gettempdir()) / f"crossmodal-test-server-{port}.log"


@pytest.fixture(scope="module")
def server(served):
    return served[0]


@pytest.fixture(scope="module")
def bystander(server):
    """A well-behaved client calling all through the matrix; its outcomes are checked at the end."""
    outcomes: list[str] = []
    stop = threading.Event()

    def keep_calling() -> None:
        with CrossModalClient(server, timeout=30) as client:
            while not stop.is_set():
                try:
                    reply = client.compare([GOOD_PNG], ["a dog", "两只狗"])
                    outcomes.append("ok" if reply.rows == 1 and reply.cols == 2 else "wrong")
                except grpc.RpcError as error:
                    outcomes.append(f"{error.code().name}: {error.details()}")

    thread = threading.Thread(target=keep_calling, daemon=True)
    thread.start()
    yield outcomes
    stop.set()
    thread.join(30)
    assert outcomes and set(outcomes) == {"ok"}, outcomes[:5]


def test_the_matrix_covers_every_rpc_and_bad_input_code():
    """Each RPC of the contract gets bad input, each code the contract gives bad input is expected
    somewhere, and each case says what its message must name."""
    service = pb.DESCRIPTOR.services_by_name["CrossModal"]
    assert set(service.methods_by_name) >= CONTRACT_RPCS
    assert {method for _, (method, _), _, _ in CASES} == CONTRACT_RPCS
    assert {code for _, _, code, _ in CASES} == BAD_INPUT_CODES
    assert [case for case, _, _, words in CASES if not words] == []
    assert len({case for case, _, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("case", "call", "code", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_its_status_and_reason(server, bystander, case, call, code, words):
    method, request = call
    with grpc.insecure_channel(server, options=[("grpc.max_send_message_length", 16 * 2**20)]) as channel:
        stub = getattr(pb_grpc_stub(channel), method)
        with pytest.raises(grpc.RpcError) as raised:
            stub(request, timeout=60)
    assert raised.value.code() == code, raised.value.details()
    for word in words:
        assert word in raised.value.details(), (word, raised.value.details())


@pytest.mark.parametrize(
    "value",
    ["\x00\x01\x02 a dog \x07", "🐶🐕‍🦺 in the ❄️", "狗" * 5 + "🐶", "\u202e reversed \u202c", "\ufeffdog"],
)
def test_odd_but_valid_texts_are_embedded(server, bystander, value):
    with CrossModalClient(server, timeout=60) as client:
        reply = client.encode([value])
    assert len(reply.embeddings) == 1
    values = np.array(reply.embeddings[0].values)
    assert values.shape == (TEXT_EMBEDDING_DIM,) and np.linalg.norm(values) == pytest.approx(1.0, abs=1e-4)
    assert reply.texts[0].text == value


def pb_grpc_stub(channel):
    from crossmodal.v1 import crossmodal_pb2_grpc

    return crossmodal_pb2_grpc.CrossModalStub(channel)


def utf8_field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (string or message) holding `payload` as it is."""
    return bytes([number << 3 | 2, len(payload)]) + payload


BAD_UTF8 = b"a dog \xff\xfe in the snow"
# (case, method, raw request body, message type named in the answer)
UNDECODABLE = [
    (
        "random bytes to Encode",
        "/crossmodal.v1.CrossModal/Encode",
        bytes(range(255, 0, -1)),
        "crossmodal.v1.EncodeRequest",
    ),
    (
        "invalid UTF-8 in an Encode text",
        "/crossmodal.v1.CrossModal/Encode",
        utf8_field(2, utf8_field(2, BAD_UTF8)),
        "crossmodal.v1.EncodeRequest",
    ),
    (
        "invalid UTF-8 in a Translate text",
        "/crossmodal.v1.CrossModal/Translate",
        utf8_field(2, BAD_UTF8),
        "crossmodal.v1.TranslateRequest",
    ),
    (
        "invalid UTF-8 in a Classify label",
        "/crossmodal.v1.CrossModal/Classify",
        utf8_field(3, BAD_UTF8),
        "crossmodal.v1.ClassifyRequest",
    ),
    (
        "random bytes to ModelInfer",
        "/inference.GRPCInferenceService/ModelInfer",
        b"\x0a\xff\xff\xff\xff\x0f",
        "inference.ModelInferRequest",
    ),
]


def raw_call(address: str, method: str, body: bytes):
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        return call(body, timeout=30)


@pytest.mark.parametrize(
    ("case", "method", "body", "message_type"), UNDECODABLE, ids=[c[0] for c in UNDECODABLE]
)
def test_a_body_that_does_not_parse_is_invalid_argument(server, bystander, case, method, body, message_type):
    with pytest.raises(grpc.RpcError) as raised:
        raw_call(server, method, body)
    assert raised.value.code() == INVALID, raised.value.details()
    assert f"request is not a valid {message_type}" in raised.value.details()


def undecodable_count(metrics_port: int, rpc: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    found = re.search(rf'crossmodal_undecodable_requests_total{{rpc="{rpc}"}} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def test_garbage_calls_are_counted_and_log_little(served, bystander):
    address, metrics_port, log_path = served
    before_count, before_log = undecodable_count(metrics_port, "Compare"), log_path.stat().st_size
    garbage = bytes(range(256)) * 4
    for _ in range(50):
        with pytest.raises(grpc.RpcError):
            raw_call(address, "/crossmodal.v1.CrossModal/Compare", garbage)
    assert undecodable_count(metrics_port, "Compare") == before_count + 50
    logged = log_path.read_bytes()[before_log:].decode(errors="replace")
    assert "Traceback" not in logged
    assert len([line for line in logged.splitlines() if "Compare" in line]) <= 1, logged[:2000]


def pixels(value: float) -> kpb.ModelInferRequest:
    """A pixel_values tensor for the committed clip_vision (3x224x224) with one odd value in row 1."""
    array = np.zeros((2, 3, 224, 224), dtype="<f4")
    array[1, 2, 100, 7] = value
    tensor = kpb.ModelInferRequest.InferInputTensor(name="pixel_values", datatype="FP32", shape=array.shape)
    return kpb.ModelInferRequest(
        model_name="clip_vision", inputs=[tensor], raw_input_contents=[array.tobytes()]
    )


def model_load(key: str, value: bytes) -> kpb.RepositoryModelLoadRequest:
    request = kpb.RepositoryModelLoadRequest(model_name="clip_vision")
    request.parameters[key].bytes_param = value
    return request


# (case, method, request, status, words the message must contain), through the inference protocol
KSERVE_CASES = [
    ("NaN pixel_values", "ModelInfer", pixels(float("nan")), INVALID, ["pixel_values", "row 1", "NaN"]),
    (
        "infinite pixel_values",
        "ModelInfer",
        pixels(float("-inf")),
        INVALID,
        ["pixel_values", "row 1", "infinite"],
    ),
    ("config override on load", "RepositoryModelLoad", model_load("config", b"{}"), INVALID, ["'config'"]),
    (
        "file override on load",
        "RepositoryModelLoad",
        model_load("file:1/model.onnx", b"onnx"),
        INVALID,
        ["'file:1/model.onnx'"],
    ),
]


@pytest.mark.parametrize(
    ("case", "method", "request_", "code", "words"), KSERVE_CASES, ids=[c[0] for c in KSERVE_CASES]
)
def test_bad_inference_protocol_input_gets_its_status_and_reason(
    server, bystander, case, method, request_, code, words
):
    with grpc.insecure_channel(server) as channel, pytest.raises(grpc.RpcError) as raised:
        getattr(kpb_grpc.GRPCInferenceServiceStub(channel), method)(request_, timeout=60)
    assert raised.value.code() == code, raised.value.details()
    for word in words:
        assert word in raised.value.details(), (word, raised.value.details())


def cosine(a, b) -> float:
    return float(np.dot(a.values, b.values))


@pytest.mark.parametrize(
    ("mixed", "language", "english"),
    [
        ("a red car on the beach 车", "en", "a red car on the beach"),
        ("two dogs in the snow, 两只狗", "en", "two dogs in the snow"),
        ("两只狗 in the snow", "zh", None),
        ("我爱Python编程", "zh", None),
    ],
)
def test_mixed_language_texts_follow_the_majority(server, bystander, mixed, language, english):
    with CrossModalClient(server, timeout=60) as client:
        reply = client.encode([mixed] + ([english] if english else []))
    result = reply.texts[0]
    assert result.language == language
    if language == "en":
        assert result.encoded_text == mixed and not result.translations and not result.tokens
        assert cosine(*reply.embeddings) > 0.5  # the English the caller wrote is what gets embedded
    else:  # jieba's words, spaces dropped; the n-best of the reference example, the best one embedded
        assert "".join(result.tokens) == mixed.replace(" ", "")
        assert len(result.translations) == DEFAULT_NBEST
        assert result.encoded_text == result.translations[0].text


def test_html_entities_do_not_hide_chinese(server, bystander):
    with CrossModalClient(server, timeout=60) as client:
        escaped, plain = client.encode(["&#20004;&#21482;&#29399;", "两只狗"]).texts
    assert escaped.text == "&#20004;&#21482;&#29399;" and escaped.language == "zh"
    assert list(escaped.tokens) == list(plain.tokens)
    assert escaped.encoded_text == plain.encoded_text


RARE_HAN = "".join(chr(0x20000 + i) for i in range(2000))  # 4 UTF-8 bytes each; jieba keeps each alone


@pytest.mark.parametrize(
    "call",
    [encode(*[text(RARE_HAN)] * 200), translate([RARE_HAN] * 200)],
    ids=["Encode", "Translate"],
)
def test_a_response_too_large_to_send_is_refused_before_the_work(server, bystander, call):
    """200 texts of 8000 bytes fit the 3 MB request limit; their response (each text echoed with its
    2000 words) would not fit, so the call is refused at once, not after segmenting and translating."""
    method, request = call
    started = time.perf_counter()
    with grpc.insecure_channel(server) as channel, pytest.raises(grpc.RpcError) as raised:
        getattr(pb_grpc_stub(channel), method)(request, timeout=120)
    elapsed = time.perf_counter() - started
    assert raised.value.code() == EXHAUSTED, raised.value.details()
    assert "--max-message-bytes" in raised.value.details() and method in raised.value.details()
    assert elapsed < 5, f"refused only after {elapsed:.1f}s"
