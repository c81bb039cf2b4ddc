"""Command line: `python -m server --model-repository DIR [--host H] [--port P] ...`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from server.app import CrossModalServer
from server.batching.settings import DEFAULT_MAX_QUEUE_ITEMS
from server.core.config import (
    DEFAULT_CACHE_BYTES,
    DEFAULT_DECODE_MEMORY,
    Limits,
    ModelControl,
    ServerConfig,
    TlsFiles,
)
from server.core.errors import StartupError

log = logging.getLogger("server")
TOKEN_ENV = "CROSSMODAL_AUTH_TOKEN"


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
        help="threads for the calls' CPU stages (decoding images, jieba, tokenising, scoring); a call "
        "waiting for its batch holds none, and the model batchers run ONNX Runtime on their own threads",
    )
    parser.add_argument(
        "--max-concurrent-calls",
        type=int,
        default=512,
        help="calls held at once (running, or waiting for a worker or a batch); more are answered "
        "RESOURCE_EXHAUSTED at once instead of queueing without bound",
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
        "--max-decode-memory",
        type=int,
        default=DEFAULT_DECODE_MEMORY,
        help="bytes that decoding images may hold at once, all calls together (estimated from each "
        "image's header before decoding); an image that does not fit waits, then gets RESOURCE_EXHAUSTED",
    )
    parser.add_argument(
        "--max-queue-items",
        type=int,
        default=DEFAULT_MAX_QUEUE_ITEMS,
        help="items that may wait in one model version's queue when its config.pbtxt sets no "
        "default_queue_policy.max_queue_size; a call that would overflow it gets RESOURCE_EXHAUSTED",
    )
    parser.add_argument(
        "--cache-bytes",
        type=int,
        default=DEFAULT_CACHE_BYTES,
        help="bytes the response caches of every model may hold together (least recently used entries go "
        "first); a model caches only when its config.pbtxt has response_cache { enable: true }; 0 turns "
        "caching off",
    )
    control = parser.add_argument_group("model control")
    control.add_argument(
        "--model-control-mode",
        choices=[m.value for m in ModelControl],
        default=ModelControl.NONE.value,
        help="none: load the repository at start and keep it; poll: also rescan it every "
        "--repository-poll-secs and load new/changed versions (warmed before they serve), unload removed "
        "ones after their last call; explicit: load what --load-model names, then LoadModel/UnloadModel RPCs",
    )
    control.add_argument(
        "--repository-poll-secs", type=float, default=15.0, help="poll period of --model-control-mode poll"
    )
    control.add_argument(
        "--load-model",
        action="append",
        default=[],
        metavar="NAME",
        help="explicit mode: a model or pipeline to load at start (repeatable; '*' loads everything)",
    )
    vectors = parser.add_argument_group("retrieval (Index / Search / Delete / ListCollections)")
    vectors.add_argument(
        "--index-path",
        type=Path,
        default=Path("crossmodal_index.db"),
        help="Milvus Lite file holding the collections (created on the first retrieval call; one server "
        "per file)",
    )
    vectors.add_argument(
        "--milvus-uri", help="a Milvus server or cluster instead of the file, e.g. http://milvus:19530"
    )
    vectors.add_argument(
        "--milvus-token", default="", help="credentials for --milvus-uri (user:password or token)"
    )
    observe = parser.add_argument_group("metrics")
    observe.add_argument(
        "--metrics-port",
        type=int,
        default=8002,
        help="port of the Prometheus text endpoint http://HOST:PORT/metrics (0 turns it off)",
    )
    security = parser.add_argument_group("security")
    security.add_argument("--tls-cert", type=Path, help="server certificate chain (PEM); enables TLS")
    security.add_argument("--tls-key", type=Path, help="private key of --tls-cert (PEM)")
    security.add_argument(
        "--tls-client-ca", type=Path, help="CA (PEM) that client certificates must be signed by (mTLS)"
    )
    security.add_argument(
        "--auth-token-file",
        type=Path,
        help=f"file holding the bearer token clients must send as 'authorization: Bearer <token>' "
        f"(or set {TOKEN_ENV}); health checks stay open",
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
        max_concurrent_calls=args.max_concurrent_calls,
        grace_seconds=args.grace_period,
        max_decode_memory=args.max_decode_memory,
        limits=limits,
        max_queue_items=args.max_queue_items,
        cache_bytes=args.cache_bytes,
        model_control=ModelControl(args.model_control_mode),
        poll_seconds=args.repository_poll_secs,
        load_models=tuple(args.load_model),
        metrics_port=args.metrics_port,
        tls=tls_files(args),
        auth_token=auth_token(args),
        index_path=args.index_path,
        milvus_uri=args.milvus_uri,
        milvus_token=args.milvus_token,
    )


def tls_files(args: argparse.Namespace) -> TlsFiles | None:
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    return TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca)


def auth_token(args: argparse.Namespace) -> str | None:
    if args.auth_token_file is not None:
        try:
            return args.auth_token_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ValueError(
                f"cannot read --auth-token-file {args.auth_token_file}: {error.strerror}"
            ) from error
    return os.environ.get(TOKEN_ENV) or None


async def serve(config: ServerConfig) -> None:
    """Serves until SIGTERM/SIGINT (also during the start-up load), then drains and stops."""
    server = CrossModalServer(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    starting = asyncio.create_task(server.start())
    signalled = asyncio.create_task(stopping.wait())
    await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done():
        starting.result()  # a server that cannot listen ends here, with the reason
        await signalled
    else:
        starting.cancel()  # signalled during the start-up load: the load stops at its next model
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    log.info("signal received: stopping")
    if not await server.stop():
        # Threads that outlived their cancellation would hold the interpreter's exit (it joins worker
        # threads) past the grace period; the server has closed what it could, so leave without them.
        logging.shutdown()
        os._exit(0)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = build_config(args)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from error
    try:
        asyncio.run(serve(config))
    except StartupError as error:  # a taken port, an unusable TLS file: one line, exit status 1
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()
