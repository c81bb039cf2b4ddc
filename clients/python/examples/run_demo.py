"""Runs the image-text search example end to end: starts a server unless one is already listening,
runs the example against it, and stops only the server it started."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from pathlib import Path

import grpc

EXAMPLES = Path(__file__).parent
ROOT = EXAMPLES.parents[2]


def listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def start_server(host: str, port: int, repository: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "server",
        "--model-repository",
        str(repository),
        "--host",
        host,
        "--port",
        str(port),
    ]
    print(f"starting server: {' '.join(command)}", flush=True)
    process = subprocess.Popen(command, cwd=ROOT)
    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=120)
    except grpc.FutureTimeoutError as error:
        process.terminate()
        raise SystemExit("the server did not become ready within 120 s") from error
    finally:
        channel.close()
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository")
    args = parser.parse_args()

    server = None
    if listening(args.host, args.port):
        print(f"using the server already listening on {args.host}:{args.port}", flush=True)
    else:
        server = start_server(args.host, args.port, args.model_repository)
    try:
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / "image_text_search.py"), "--server", f"{args.host}:{args.port}"],
            check=False,
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
