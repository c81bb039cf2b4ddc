"""Command line: `python -m server --model-repository DIR [--host H] [--port P] ...`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from server.app import CrossModalServer
from server.config import Limits, ServerConfig

log = logging.getLogger("server")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Limits()
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="crossmodal: gRPC server for CLIP image-text embeddings, similarity and zero-shot "
        "classification, over a Triton-style model repository run by ONNX Runtime.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        required=True,
        help="folder of model folders, each with config.pbtxt and numbered version folders",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for all interfaces)"
    )
    parser.add_argument("--port", type=int, default=8001, help="gRPC port (0 picks a free one and logs it)")
    parser.add_argument(
        "--default-pipeline", default="clip", help="pipeline used when a request leaves model.name empty"
    )
    parser.add_argument(
        "--strict-gpu",
        action="store_true",
        help="refuse to load a KIND_GPU model when CUDA is unavailable, instead of running it on CPU",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=64,
        help="calls handled at once off the event loop (decoding, tokenising, translating, then waiting "
        "for the model batchers, which run ONNX Runtime on their own threads); more calls wait in line",
    )
    parser.add_argument(
        "--grace-period",
        type=float,
        default=10.0,
        help="seconds in-flight requests get to finish on SIGTERM/SIGINT",
    )
    parser.add_argument(
        "--max-items",
        type=int,
        default=defaults.max_items,
        help="most items (or queries + candidates, or labels) in one request",
    )
    parser.add_argument(
        "--max-image-bytes",
        type=int,
        default=defaults.max_image_bytes,
        help="largest encoded image accepted, in bytes",
    )
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        default=defaults.max_image_pixels,
        help="largest image accepted, in width x height pixels (checked before decoding)",
    )
    parser.add_argument(
        "--max-text-chars",
        type=int,
        default=defaults.max_text_chars,
        help="longest text accepted, in characters",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=defaults.max_message_bytes,
        help="largest gRPC message sent or received",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging verbosity"
    )
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> ServerConfig:
    limits = Limits(
        max_items=args.max_items,
        max_image_bytes=args.max_image_bytes,
        max_image_pixels=args.max_image_pixels,
        max_text_chars=args.max_text_chars,
        max_message_bytes=args.max_message_bytes,
    )
    return ServerConfig(
        model_repository=args.model_repository,
        host=args.host,
        port=args.port,
        default_pipeline=args.default_pipeline,
        strict_gpu=args.strict_gpu,
        workers=args.workers,
        grace_seconds=args.grace_period,
        limits=limits,
    )


async def serve(config: ServerConfig) -> None:
    server = CrossModalServer(config)
    await asyncio.get_running_loop().run_in_executor(None, server.load_models)
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = build_config(args)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
