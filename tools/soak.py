"""A bounded soak: a mixed load against a server started here, watching errors and the server's memory.

The run is cut into windows; the server's resident memory (RSS) is sampled after each. The first windows
are warm-up (caches, allocator pools, thread stacks fill up); growth is measured from the end of warm-up to
the end. Exit status 1 when any call failed or memory grew by the limit or more.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import psutil

from crossmodal_loadtest.config import CONCURRENCY, LoadConfig, Stage
from crossmodal_loadtest.runner import run_load
from tools.local_server import ROOT, free_port, running_server

WINDOWS = 10
WARMUP_WINDOWS = 2


def soak(repository: Path, seconds: float, concurrency: int, max_growth: float, log_path: Path) -> dict:
    window = seconds / WINDOWS
    port = free_port()
    samples, requests, errors = [], 0, {}
    with running_server(repository, "127.0.0.1", port, log_path=log_path) as (address, process):
        server = psutil.Process(process.pid)
        for index in range(WINDOWS):
            config = LoadConfig(
                stages=(Stage(CONCURRENCY, concurrency),),
                target=address,
                duration=window,
                warmup_seconds=1.0 if index == 0 else 0.0,
                languages=("en", "zh"),
                seed=index,
            )
            report = run_load(config)
            for stage in report.stages:
                requests += stage.total.requests
                for code, count in stage.total.errors.items():
                    errors[code] = errors.get(code, 0) + count
            samples.append(server.memory_info().rss)
            print(
                f"[soak] window {index + 1}/{WINDOWS}: {requests} calls, {sum(errors.values())} errors, "
                f"server RSS {samples[-1] / 2**20:.1f} MiB",
                flush=True,
            )
    baseline = samples[WARMUP_WINDOWS - 1]
    growth = (samples[-1] - baseline) / baseline
    return {
        "seconds": seconds,
        "concurrency": concurrency,
        "calls": requests,
        "errors": errors,
        "rss_mib": [round(s / 2**20, 1) for s in samples],
        "rss_growth_after_warmup": round(growth, 4),
        "max_growth": max_growth,
        "passed": not errors and growth < max_growth,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the soak (default: 600)")
    parser.add_argument("--concurrency", type=int, default=8, help="calls in flight (default: 8)")
    parser.add_argument(
        "--max-growth", type=float, default=0.05, help="allowed RSS growth after warm-up (default: 0.05)"
    )
    parser.add_argument(
        "--model-repository", type=Path, default=ROOT / "model_repository", help="repository to serve"
    )
    parser.add_argument("--json", type=Path, help="write the report here too")
    parser.add_argument("--server-log", type=Path, default=Path("/tmp/crossmodal-soak-server.log"))
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.concurrency < 1:
        parser.error("--seconds must be positive and --concurrency at least 1")
    report = soak(args.model_repository, args.seconds, args.concurrency, args.max_growth, args.server_log)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
