# crossmodal: every set-up and check step lives here. `make demo` and `make test` do all set-up themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8001
MODEL_REPOSITORY ?= model_repository
# The stubs of every .proto go into the crossmodal-protos distribution (protos/python), never into git.
PROTOS_PACKAGE := protos/python
PROTO_OUT := $(PROTOS_PACKAGE)/src
PROTOS := $(wildcard protos/crossmodal/v1/*.proto protos/inference/*.proto)
GENERATED := $(foreach suffix,_pb2.py _pb2_grpc.py _pb2.pyi,$(PROTOS:protos/%.proto=$(PROTO_OUT)/%$(suffix)))
STAMP := $(VENV)/.setup-done
TRITON_VENV := .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.setup-done

.PHONY: setup proto serve demo test lint format demo-models eval accuracy pretrained loadtest bench-models bench soak node-setup node-demo clean

setup: $(STAMP) $(TRITON_STAMP) proto

$(STAMP): requirements.txt requirements-dev.txt $(PROTOS_PACKAGE)/pyproject.toml clients/python/pyproject.toml \
		clients/loadtest/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	# open_clip is only the tokenizer oracle of the tests; its own deps would pull torchvision.
	$(BIN)/pip install -q --no-deps open-clip-torch==3.3.0
	$(BIN)/pip install -q -e $(PROTOS_PACKAGE)
	$(BIN)/pip install -q -e clients/python
	$(BIN)/pip install -q -e clients/loadtest
	touch $@

# Triton's Python client pins protobuf < 7: it gets its own virtualenv, used by the protocol tests.
$(TRITON_STAMP): requirements-triton.txt
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q -r requirements-triton.txt
	touch $@

proto: $(GENERATED)

# One protoc run writes all three files of a .proto (a pattern rule with several targets).
$(PROTO_OUT)/%_pb2.py $(PROTO_OUT)/%_pb2_grpc.py $(PROTO_OUT)/%_pb2.pyi: protos/%.proto $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I protos --python_out=$(PROTO_OUT) --pyi_out=$(PROTO_OUT) \
		--grpc_python_out=$(PROTO_OUT) $<

serve: setup
	$(BIN)/python -m server --model-repository $(MODEL_REPOSITORY) --host $(HOST) --port $(PORT)

demo: setup
	$(BIN)/python -m tools.demo --host $(HOST) --port $(PORT) --model-repository $(MODEL_REPOSITORY)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: setup lint
	$(BIN)/python -m pytest -q

# Trains the demo-world CLIP and translator on CPU and exports them into MODEL_REPOSITORY as version 1.
demo-models: setup
	$(BIN)/python -m tools.world.build_demo_models --repository $(MODEL_REPOSITORY)

# int8 variants of the models in MODEL_REPOSITORY and of the real-size bench models, made in a scratch folder,
# against their fp32 sources: embedding cosine, translation agreement and (demo models) the demo world's top-1
# figures; fails when one misses its bound. About 5 minutes (the bench models are built first if missing).
accuracy: bench-models
	$(BIN)/python -m tools.accuracy --repository $(MODEL_REPOSITORY) --int8 --world clip_vision clip_text opus_mt_zh_en
	$(BIN)/python -m tools.accuracy --repository bench/models/repository --int8 clip_vision clip_text opus_mt_zh_en

# Exports openai/clip-vit-base-patch32 and Helsinki-NLP/opus-mt-zh-en as new versions (needs the Hugging Face hub).
pretrained: setup
	$(BIN)/python -m tools.pretrained --repository $(MODEL_REPOSITORY)

# Held-out figures of the demo models through a server (started here unless one listens on HOST:PORT).
eval: setup
	$(BIN)/python -m tools.world.evaluate --host $(HOST) --port $(PORT) --model-repository $(MODEL_REPOSITORY)

# Random-weight models of real size for the benchmarks (ViT-B/32 CLIP, opus-mt-zh-en Marian); about a minute, 2.6 GB.
bench-models: setup
	$(BIN)/python -m tools.bench_models --out bench/models

# Server vs in-process ONNX Runtime, transformers and CTranslate2; writes bench/results/latest.{json,md,png}.
bench: bench-models
	$(BIN)/python -m bench.run --models bench/models --out bench/results

NODE_CLIENT := clients/node

# The Node.js client's dependencies, exactly as package-lock.json pins them.
node-setup: $(NODE_CLIENT)/node_modules/.package-lock.json

$(NODE_CLIENT)/node_modules/.package-lock.json: $(NODE_CLIENT)/package-lock.json
	cd $(NODE_CLIENT) && npm ci --no-audit --no-fund

# The Node.js client's search example against the server on HOST:PORT (start one with `make serve`).
node-demo: node-setup
	cd $(NODE_CLIENT) && node examples/search.js --server $(HOST):$(PORT)

SOAK_SECONDS ?= 600
# Mixed load against a fresh server for SOAK_SECONDS: fails on any error or >= 5% memory growth after warm-up.
soak: setup
	$(BIN)/python -m tools.soak --seconds $(SOAK_SECONDS) --model-repository $(MODEL_REPOSITORY)

LOADTEST_ARGS ?= --concurrency 1,4,16,32 --duration 10
# Load test of the server on HOST:PORT (start one with `make serve`); LOADTEST_ARGS as in `crossmodal-loadtest --help`.
loadtest: setup
	$(BIN)/crossmodal-loadtest --host $(HOST) --port $(PORT) $(LOADTEST_ARGS)

clean:
	rm -rf .cache .pytest_cache .ruff_cache $(GENERATED) $(NODE_CLIENT)/node_modules
