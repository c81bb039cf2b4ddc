"""Writes a LoadReport out: a readable table, JSON (everything) and CSV (one row per stage × operation)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from crossmodal_loadtest.results import LoadReport, StageResult
from crossmodal_loadtest.stats import OperationStats

LATENCY_FIELDS = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms")
CSV_FIELDS = (
    "stage",
    "mode",
    "level",
    "operation",
    "requests",
    "succeeded",
    "failed",
    "items",
    "elapsed_s",
    "requests_per_second",
    "items_per_second",
    *LATENCY_FIELDS,
    "min_ms",
    "errors",
)
_TABLE_HEADER = ("stage", "operation", "requests", "failed", "req/s", "items/s", "p50", "p90", "p95", "p99")
_TABLE_HEADER += ("max", "mean")


def _latency_cells(stats: OperationStats) -> list[str]:
    if stats.latency is None:
        return ["-"] * len(LATENCY_FIELDS)
    return [f"{getattr(stats.latency, name):.1f}" for name in LATENCY_FIELDS]


def _table_row(stage: str, stats: OperationStats) -> list[str]:
    return [
        stage,
        stats.operation,
        str(stats.requests),
        str(stats.failed),
        f"{stats.requests_per_second:.1f}",
        f"{stats.items_per_second:.1f}",
        *_latency_cells(stats),
    ]


def _stage_rows(stage: StageResult) -> list[list[str]]:
    rows = [_table_row(stage.name, stats) for stats in stage.operations]
    rows.append(_table_row(stage.name, stage.total))
    return rows


def format_table(report: LoadReport) -> str:
    """Per stage, one row per operation and an `all` row; latencies in ms; then failures with samples."""
    rows = [list(_TABLE_HEADER)]
    for stage in report.stages:
        rows.extend(_stage_rows(stage))
    widths = [max(len(row[column]) for row in rows) for column in range(len(_TABLE_HEADER))]
    lines = []
    for index, row in enumerate(rows):
        # Text columns left-aligned, numbers right-aligned, as in any spreadsheet.
        cells = [
            cell.ljust(width) if column < 2 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("latencies in ms; req/s and latencies count successful requests")
    for stage in report.stages:
        if stage.send_lag is not None and stage.total.requests:
            lag = stage.send_lag
            lines.append(
                f"{stage.name}: offered {stage.stage.level:g} req/s; sends behind schedule by "
                f"p99 {lag.p99_ms:.1f} ms, max {lag.max_ms:.1f} ms"
            )
    lines.extend(_failure_lines(report))
    return "\n".join(lines)


def _failure_lines(report: LoadReport) -> list[str]:
    lines = []
    for stage in report.stages:
        for stats in stage.operations:
            for code, count in stats.errors.items():
                samples = "; ".join(stats.error_samples.get(code, []))
                lines.append(f"{stage.name} {stats.operation}: {count} × {code}: {samples}")
    return ["", "failures:", *lines] if lines else []


def write_json(report: LoadReport, path: Path) -> None:
    Path(path).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def csv_rows(report: LoadReport) -> list[dict]:
    rows = []
    for stage in report.stages:
        for stats in [*stage.operations, stage.total]:
            data = stats.to_dict()
            latency = data.pop("latency") or {}
            rows.append(
                {
                    "stage": stage.name,
                    "mode": stage.stage.mode,
                    "level": f"{stage.stage.level:g}",
                    **{name: data[name] for name in CSV_FIELDS if name in data},
                    **{name: latency.get(name, "") for name in (*LATENCY_FIELDS, "min_ms")},
                    "errors": ";".join(f"{code}={count}" for code, count in stats.errors.items()),
                }
            )
    return rows


def write_csv(report: LoadReport, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_rows(report))
