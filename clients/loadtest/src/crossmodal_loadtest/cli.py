"""`crossmodal-loadtest`: applies load to a crossmodal server and reports latency and throughput."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crossmodal.cli import add_security_arguments, security
from crossmodal_loadtest.config import CONCURRENCY, RATE, LoadConfig, Stage
from crossmodal_loadtest.image_size import IMAGE_SIZE_FORMS, MAX_IMAGE_SIDE, parse_image_size
from crossmodal_loadtest.mix import DEFAULT_MIX, OPERATIONS, OperationMix
from crossmodal_loadtest.plot import plot_latency_vs_throughput
from crossmodal_loadtest.report import format_table, write_csv, write_json
from crossmodal_loadtest.runner import ServerUnreachable, run_load

DESCRIPTION = """\
Applies load to a crossmodal gRPC server and reports, per stage and per operation, the request count,
throughput (requests/s and items/s), latency percentiles (p50/p90/p95/p99/max/mean, ms) and failures by
gRPC status code. Failed requests never stop the run.

Stages:
  --concurrency 1,4,16  closed loop: keep N requests in flight, the next sent as one completes; latency
                        is measured from the actual send.
  --rate 20,50          open loop: Poisson arrivals at R requests/s (seeded exponential gaps), sent on
                        schedule whether or not earlier requests finished; latency is measured from the
                        scheduled send time, so generator or server stalls are not hidden.
Concurrency stages run first, then rate stages. Each stage starts with a warm-up that is not measured.

Operations (--mix): encode_images (Encode of images), encode_texts (Encode of captions), compare (images
against --candidates captions), classify (images against --candidates labels, prompt "a photo of {}"
or "一张{}的照片"), translate (Chinese captions, model-default beams). Texts are drawn from built-in
English and Chinese captions in the --languages given; translate always sends Chinese. Images are
generated photo-like JPEGs (a scene with fine texture and sensor noise, quality 90) of --image-size, or
the files of --images DIR.
"""

EPILOG = """\
examples:
  crossmodal-loadtest --concurrency 1,4,16,32 --duration 10
  crossmodal-loadtest --rate 20,50,100 --duration 30 --json run.json --csv run.csv --plot run.png
  crossmodal-loadtest --host 10.0.0.5 --port 8001 --mix encode_images=1 --batch-items 8 --images photos/
  crossmodal-loadtest --mix encode_images=1 --image-size 12mp --concurrency 1,4,8
  crossmodal-loadtest --mix encode_texts=1,translate=1 --languages zh --concurrency 8 --requests 500
  crossmodal-loadtest --concurrency 4 --model clip --version 2 --fail-on-error

exit status: 0 when the run completed (with --fail-on-error: and no request failed), 1 when the server
could not be reached or (with --fail-on-error) a measured request failed, 2 for invalid options.
"""


def _numbers(kind: type):
    def parse(text: str) -> list:
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None

    return parse


def _mix(text: str) -> OperationMix:
    try:
        return OperationMix.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _image_size(text: str) -> tuple[int, int]:
    try:
        return parse_image_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _tag(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crossmodal-loadtest",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="server host (default: %(default)s)")
    server.add_argument("--port", type=int, default=8001, help="server port (default: %(default)s)")
    server.add_argument(
        "--model", default="", help="pipeline name sent in every request (default: the server's)"
    )
    server.add_argument(
        "--version",
        type=int,
        default=0,
        help="model version sent in every request (default: 0, newest ready)",
    )
    server.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds after which a request is abandoned and counted as DEADLINE_EXCEEDED "
        "(default: %(default)s)",
    )
    server.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the server to accept a connection before giving up (default: %(default)s)",
    )

    add_security_arguments(parser)

    stages = parser.add_argument_group("stages (each one warm-up, then measurement)")
    stages.add_argument(
        "--concurrency",
        type=_numbers(int),
        metavar="N,N,...",
        help="closed-loop stages, one per number of requests in flight (default: 1,4,16 unless --rate)",
    )
    stages.add_argument(
        "--rate",
        type=_numbers(float),
        metavar="R,R,...",
        help="open-loop stages, one per Poisson arrival rate in requests/s",
    )
    stages.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per stage (default: %(default)s)"
    )
    stages.add_argument(
        "--requests",
        type=int,
        help="measured requests sent per stage; replaces --duration",
    )
    stages.add_argument(
        "--warmup-seconds",
        type=float,
        default=1.0,
        help="unmeasured seconds at the start of each stage (default: %(default)s)",
    )
    stages.add_argument(
        "--warmup-requests",
        type=int,
        default=0,
        help="unmeasured requests at the start of each stage; warm-up lasts until both this count and "
        "--warmup-seconds are reached (default: %(default)s)",
    )

    workload = parser.add_argument_group("workload")
    workload.add_argument(
        "--mix",
        type=_mix,
        default=DEFAULT_MIX,
        metavar="OP=W,...",
        help=f"relative weights of the operations ({', '.join(OPERATIONS)}); omitted ones are not sent "
        f"(default: {DEFAULT_MIX})",
    )
    workload.add_argument(
        "--languages",
        default="en,zh",
        metavar="LANG,...",
        help="languages of the captions and labels, en and/or zh, drawn evenly (default: %(default)s)",
    )
    workload.add_argument(
        "--batch-items",
        type=int,
        default=1,
        metavar="N",
        help="images or texts per request; for compare the image queries (default: %(default)s)",
    )
    workload.add_argument(
        "--candidates",
        type=int,
        default=3,
        metavar="N",
        help="captions per compare request, labels per classify request (default: %(default)s)",
    )
    workload.add_argument(
        "--image-size",
        type=_image_size,
        default="224",
        metavar="SIZE",
        help=f"size of the generated photos: {IMAGE_SIZE_FORMS}; at most {MAX_IMAGE_SIDE} pixels a side "
        "(default: %(default)s)",
    )
    workload.add_argument(
        "--images", type=Path, metavar="DIR", help="send the image files in DIR instead of generated images"
    )
    workload.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the operation choice, the inputs and the arrival times (default: %(default)s)",
    )

    output = parser.add_argument_group("output")
    output.add_argument(
        "--json", type=Path, metavar="PATH", help="write the whole report: config, machine, date, every stage"
    )
    output.add_argument(
        "--csv", type=Path, metavar="PATH", help="write one row per stage and operation (and an `all` row)"
    )
    output.add_argument(
        "--plot", type=Path, metavar="PATH.png", help="plot p50 and p99 latency against throughput per stage"
    )
    output.add_argument(
        "--no-progress", action="store_true", help="no progress bar (there is none when stderr is not a TTY)"
    )
    output.add_argument(
        "--tag",
        type=_tag,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label copied into the JSON report, e.g. --tag server=gpu-1 (repeatable)",
    )
    output.add_argument(
        "--fail-on-error", action="store_true", help="exit with status 1 if any measured request failed"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    """The run the options describe; raises ValueError for inconsistent ones."""
    concurrency = args.concurrency if args.concurrency is not None else ([] if args.rate else [1, 4, 16])
    stages = [Stage(CONCURRENCY, level) for level in concurrency]
    stages += [Stage(RATE, level) for level in args.rate or []]
    return LoadConfig(
        stages=tuple(stages),
        target=f"{args.host}:{args.port}",
        model=args.model,
        version=args.version,
        timeout=args.timeout,
        connect_timeout=args.connect_timeout,
        security=security(args),
        mix=args.mix,
        languages=tuple(part.strip() for part in args.languages.split(",") if part.strip()),
        batch_items=args.batch_items,
        candidates=args.candidates,
        image_size=args.image_size,
        image_dir=args.images,
        duration=None if args.requests is not None else args.duration,
        requests=args.requests,
        warmup_seconds=args.warmup_seconds,
        warmup_requests=args.warmup_requests,
        seed=args.seed,
        tags=dict(args.tag),
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    show_progress = not args.no_progress and sys.stderr.isatty()
    stage_names = ", ".join(stage.name for stage in config.stages)
    images = (
        f"images from {config.image_dir}" if config.image_dir else "images {}x{}".format(*config.image_size)
    )
    print(
        f"crossmodal-loadtest: {config.target}, stages {stage_names}, mix {config.mix}, {images}", flush=True
    )
    try:
        report = run_load(config, show_progress=show_progress)
    except ServerUnreachable as error:
        print(f"crossmodal-loadtest: {error}", file=sys.stderr)
        return 1
    print(format_table(report))
    for path, write in (
        (args.json, write_json),
        (args.csv, write_csv),
        (args.plot, plot_latency_vs_throughput),
    ):
        if path is not None:
            write(report, path)
            print(f"wrote {path}")
    return 1 if args.fail_on_error and report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
