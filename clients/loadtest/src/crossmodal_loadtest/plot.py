"""Latency against throughput across the stages of a run, as a PNG."""

from __future__ import annotations

from pathlib import Path

# The Agg canvas draws without a display and without touching pyplot's global state.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from crossmodal_loadtest.config import CONCURRENCY, RATE
from crossmodal_loadtest.results import LoadReport

_MODE_TITLES = {CONCURRENCY: "concurrency (closed loop)", RATE: "request rate (open loop)"}
_MODE_STYLES = {CONCURRENCY: ("o", "tab:blue"), RATE: ("s", "tab:orange")}


def plot_latency_vs_throughput(report: LoadReport, path: Path, title: str | None = None) -> None:
    """p50 and p99 latency of all operations together against achieved throughput, one line per load
    mode, each point labelled with its stage; the knee where p99 turns upwards is the useful capacity."""
    figure = Figure(figsize=(8, 5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for mode in (CONCURRENCY, RATE):
        stages = [s for s in report.stages if s.stage.mode == mode and s.total.latency is not None]
        # In order of offered load, so the line shows what more load did (a saturated server's
        # throughput stays put or drops while its latency climbs).
        stages.sort(key=lambda s: s.stage.level)
        if not stages:
            continue
        throughput = [s.total.requests_per_second for s in stages]
        marker, colour = _MODE_STYLES[mode]
        # One colour per load mode; solid p50 under dashed p99 shows the tail's spread at each stage.
        for name, style in (("p50_ms", "-"), ("p99_ms", "--")):
            latencies = [getattr(s.total.latency, name) for s in stages]
            label = f"{name[:3]} — {_MODE_TITLES[mode]}"
            axes.plot(throughput, latencies, linestyle=style, marker=marker, color=colour, label=label)
        for stage, x in zip(stages, throughput, strict=True):
            axes.annotate(
                stage.name,
                (x, stage.total.latency.p99_ms),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    axes.set_xlabel("throughput (successful requests / s)")
    axes.set_ylabel("latency (ms)")
    axes.set_ylim(bottom=0)
    axes.margins(x=0.12)
    axes.grid(True, alpha=0.3)
    config = report.config
    default_title = (
        f"crossmodal load test — {config.target} — {report.started_at}\n"
        f"mix {config.mix}, {config.batch_items} item(s) per request, languages {','.join(config.languages)}"
    )
    axes.set_title(title or default_title, fontsize=9)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    else:
        axes.text(0.5, 0.5, "no successful requests", ha="center", va="center", transform=axes.transAxes)
    figure.tight_layout()
    figure.savefig(path)
