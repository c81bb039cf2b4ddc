"""The Node.js client (clients/node) against a real server on the committed demo models.

Node.js and npm are requirements of the project, so their absence fails this test instead of skipping it.
The Python client computes the expectations (a Chinese text's translations and embedding, the example
image's embedding) that the Node test must reproduce.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from crossmodal import CrossModalClient
from tests.fixtures.server import ROOT, running_server

NODE_CLIENT = ROOT / "clients" / "node"
IMAGE = ROOT / "clients" / "python" / "examples" / "data" / "two_dogs_in_snow.jpg"
TEXT = "两只狗在雪地里"
MIN_NODE_MAJOR = 18


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: Node.js >= {MIN_NODE_MAJOR} and npm are needed to test the Node "
            "client (clients/node); install them (e.g. from https://nodejs.org) and run the tests again",
            pytrace=False,
        )
    return path


def _check_node_version(node: str) -> None:
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major = int(re.match(r"v(\d+)", version).group(1))
    if major < MIN_NODE_MAJOR:
        pytest.fail(f"Node.js {version} is too old for clients/node: need >= {MIN_NODE_MAJOR}", pytrace=False)


def _install_dependencies(npm: str) -> None:
    """`npm ci` only when node_modules is missing or older than the lock file, so reruns stay fast."""
    lock = NODE_CLIENT / "package-lock.json"
    installed = NODE_CLIENT / "node_modules" / ".package-lock.json"  # npm writes it last
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=NODE_CLIENT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"npm ci failed in {NODE_CLIENT}:\n{done.stdout}\n{done.stderr}"


def _expectations(address: str) -> dict:
    """What the Python client gets for the same requests the Node test sends."""
    with CrossModalClient(address, timeout=30) as client:
        translated = client.translate([TEXT]).results[0]
        text = client.encode([TEXT])
        image = client.encode([IMAGE.read_bytes()])
    return {
        "text": TEXT,
        "image": str(IMAGE),
        "translations": [{"text": h.text, "score": h.score} for h in translated.translations],
        "encoded_text": text.texts[0].encoded_text,
        "text_embedding": list(text.embeddings[0].values),
        "image_embedding": list(image.embeddings[0].values),
    }


def test_node_client_against_a_real_server(tmp_path):
    node, npm = _tool("node"), _tool("npm")
    _check_node_version(node)
    _install_dependencies(npm)

    with running_server(ROOT / "model_repository") as (address, _process):
        expectations = tmp_path / "expectations.json"
        expectations.write_text(json.dumps(_expectations(address), ensure_ascii=False))
        env = {**os.environ, "CROSSMODAL_ADDRESS": address, "CROSSMODAL_EXPECTATIONS": str(expectations)}
        done = subprocess.run(
            [node, "--test", "--test-reporter=tap", "test/"],
            cwd=NODE_CLIENT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, f"node --test failed:\n{output}"
    # With the expectations given, every Node test must have run.
    assert "# SKIP" not in output, f"node --test skipped tests:\n{output}"
