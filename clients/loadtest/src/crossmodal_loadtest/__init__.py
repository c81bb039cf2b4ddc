"""Load generator for crossmodal servers.

From Python::

    from crossmodal_loadtest import CONCURRENCY, LoadConfig, Stage, run_load

    report = run_load(LoadConfig(stages=(Stage(CONCURRENCY, 8),), target="127.0.0.1:8001", duration=5))
    print(report.stages[0].total.latency.p99_ms)

`crossmodal_loadtest.stats` (percentile, LatencySummary, OperationRecorder) works on any latencies.
"""

from crossmodal_loadtest.config import CONCURRENCY, RATE, LoadConfig, Stage
from crossmodal_loadtest.mix import OPERATIONS, OperationMix
from crossmodal_loadtest.results import LoadReport, StageResult
from crossmodal_loadtest.runner import ServerUnreachable, run_load, run_load_async
from crossmodal_loadtest.stats import LatencySummary, OperationStats, percentile

__all__ = [
    "CONCURRENCY",
    "OPERATIONS",
    "RATE",
    "LatencySummary",
    "LoadConfig",
    "LoadReport",
    "OperationMix",
    "OperationStats",
    "ServerUnreachable",
    "Stage",
    "StageResult",
    "percentile",
    "run_load",
    "run_load_async",
]
