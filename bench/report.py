"""Writes the results: latest.json (figures, targets, raw numbers, machine, versions), .md and .png."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
from pathlib import Path

from bench.figures import AT_LEAST, TARGETS, Figure, Target

PACKAGES = (
    "onnxruntime-gpu",
    "onnxruntime",
    "ctranslate2",
    "torch",
    "transformers",
    "grpcio",
    "protobuf",
    "numpy",
    "pillow",
)


def machine() -> dict:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def packages() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def document(figures: list[Figure], context: dict) -> dict:
    """The latest.json content: each key holds its figure; `targets` and `raw` say against what and from
    which measurements."""
    doc: dict = {figure.key: figure.value for figure in figures}
    doc["targets"] = {
        f.key: {"target": f.target.value, "goal": f.target.goal, "unit": f.target.unit, "met": f.met}
        for f in figures
    }
    doc["raw"] = {f.key: f.raw for f in figures}
    doc["meanings"] = {f.key: f.target.meaning for f in figures}
    doc["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    doc["machine"] = machine()
    doc["packages"] = packages()
    doc.update(context)
    return doc


def markdown(doc: dict, figures: list[Figure]) -> str:
    cpu = doc["machine"]
    lines = [
        "# crossmodal benchmark",
        "",
        f"{doc['date']} · {cpu['cpu']}, {cpu['cores']} cores · models: {doc.get('models', '?')} "
        f"({doc.get('preset', '?')})",
        "",
        *_settings_lines(doc),
        "| key | value | target | met? | raw figures |",
        "|---|---:|---:|:---:|---|",
    ]
    for figure in figures:
        target = figure.target
        value = _with_unit(f"{figure.value:.3g}", target.unit)
        goal = f"{target.goal} {_with_unit(f'{target.value:g}', target.unit)}" if target.has_target else "—"
        lines.append(f"| `{figure.key}` | {value} | {goal} | {_verdict(figure)} | {_raw_summary(figure)} |")
    lines += ["", "What each key measures:", ""]
    lines += [f"- `{f.key}`: {f.target.meaning}" for f in figures]
    lines += ["", "Packages: " + ", ".join(f"{k} {v}" for k, v in doc["packages"].items()), ""]
    return "\n".join(lines)


def _with_unit(number: str, unit: str) -> str:
    return f"{number}×" if unit == "x" else f"{number} {unit}"


def _verdict(figure: Figure) -> str:
    """yes / **no** against the target; a figure without one is only measured."""
    if figure.met is None:
        return "measured"
    return "yes" if figure.met else "**no**"


def _settings_lines(doc: dict) -> list[str]:
    s = doc.get("settings")
    lines = []
    if s:
        lines += [
            f"Load tests: {s['concurrency']} concurrent calls for {s['serve_seconds']:g} s after "
            f"{s['serve_warmup_seconds']:g} s warm-up; in-process sweeps: {s['sweep_seconds']:g} s per batch "
            f"size; translation: median of {s['translate_repeats']} calls; overhead: "
            f"{s['overhead_repeats']} calls each way.",
            "",
        ]
        if "index_images" in s:
            lines += [
                f"Retrieval: {s['index_images']} images indexed, then Search over {s['search_vectors']} "
                f"vectors, {s['search_queries']} calls.",
                "",
            ]
    if doc.get("preset") == "tiny":
        lines += ["Tiny models and short runs: this checks the machinery; the figures mean nothing.", ""]
    return lines


def _raw_summary(figure: Figure) -> str:
    """The few raw numbers behind a figure, in words."""
    raw = figure.raw
    if figure.key.startswith("p1"):
        baseline = raw.get("onnxruntime") or raw.get("transformers")
        name = "onnxruntime" if "onnxruntime" in raw else "transformers"
        return (
            f"server {raw['server']['images_per_s']:.1f} img/s; {name} {baseline['best_images_per_s']:.1f} "
            f"img/s at batch {baseline['best_batch']}"
        )
    if figure.key.startswith("p2"):
        padded = raw["onnxruntime_padded_to_context"]
        return (
            f"server {raw['server']['captions_per_s']:.1f} captions/s; padded to 77 "
            f"{padded['best_captions_per_s']:.1f}/s at batch {padded['best_batch']}; "
            f"{raw['mean_caption_tokens']:.1f} tokens per caption on average"
        )
    if figure.key == "p3_hf_speedup":
        return (
            f"transformers {raw['transformers_generate']['median_ms']:.1f} ms; "
            f"ours {raw['ours']['median_ms']:.1f} ms (median)"
        )
    if figure.key.startswith("p3"):
        return (
            f"ours {raw['ours']['median_ms']:.1f} ms; ctranslate2 "
            f"{raw['ctranslate2_fp32']['median_ms']:.1f} ms (median, {_sentences(raw['sentences'])})"
        )
    if figure.key == "p5_index_images_per_s":
        return f"{raw['images']} images in {raw['seconds']:.1f} s, {raw['batch']} per call"
    if figure.key == "p5_search_p50_ms":
        return (
            f"{raw['calls']} calls over {raw['collection_size']} vectors: "
            f"p90 {raw['english_ms']['p90']:.2f} ms; "
            f"Chinese queries (translated) p50 {raw['chinese_ms']['p50']:.2f} ms"
        )
    if figure.key.startswith("p6"):
        return _photo_summary(figure.key, raw)
    return f"p50 gRPC {raw['grpc_ms']['p50']:.2f} ms; in process {raw['in_process_ms']['p50']:.2f} ms"


def _photo_summary(key: str, raw: dict) -> str:
    if key == "p6_preprocess_12mp_speedup":
        sizes = "; ".join(
            f"{name} {entry['exact_ms']:.1f} → {entry['fast_ms']:.1f} ms"
            for name, entry in raw["per_size"].items()
        )
        return f"exact → fast per photo: {sizes}; embedding cosine ≥ {raw['min_cosine_all_sizes']:.6f}"
    if key == "p6_cached_classify_speedup":
        return (
            f"first call {raw['first']['median_ms']:.0f} ms; again {raw['again']['median_ms']:.1f} ms "
            f"(medians)"
        )
    baseline, name = (
        (raw["onnxruntime_exact"], "onnxruntime + exact preprocessing")
        if key.endswith("_vs_ort_exact")
        else (raw["transformers"], "transformers")
    )
    return (
        f"server {raw['server']['photos_per_s']:.2f} photos/s; {name} {baseline['best_photos_per_s']:.2f} "
        f"photos/s at batch {baseline['best_batch']}"
    )


def _sentences(count: int) -> str:
    return "1 sentence" if count == 1 else f"{count} sentences"


def plot(figures: list[Figure], path: Path) -> None:
    """One bar per key, value against its target (a tick); one panel per unit, the ratios on a log axis.
    A figure without a target is a grey bar without a tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = list(dict.fromkeys(f.target.unit for f in figures))
    panels = [[f for f in figures if f.target.unit == unit] for unit in units]
    heights = [max(1, len(group)) for group in panels]
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(8, 1.0 + 0.55 * sum(heights)), gridspec_kw={"height_ratios": heights}
    )
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, group in zip(axes, panels, strict=True):
        _bars(ax, group)
    fig.suptitle("crossmodal benchmark: value vs target (green: met, grey: no target)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _bars(ax, group: list[Figure]) -> None:
    names = [f.key for f in group][::-1]
    values = [max(f.value, 1e-3) if f.target.unit == "x" else f.value for f in group][::-1]
    colours = [{True: "tab:green", False: "tab:red", None: "tab:grey"}[f.met] for f in group][::-1]
    ax.barh(names, values, color=colours)
    for row, figure in enumerate(group[::-1]):
        target = figure.target
        if target.has_target:
            ax.plot([target.value] * 2, [row - 0.4, row + 0.4], color="black", linewidth=2)
        ax.annotate(
            f"{figure.value:.3g}{_target_note(target)}",
            (max(values[row], target.value or 0), row),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    if group[0].target.unit == "x":
        from matplotlib.ticker import FuncFormatter, LogLocator

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda _v, _pos: ""))
        ax.set_xlabel("ratio (log scale)")
    else:
        ax.set_xlabel("milliseconds" if group[0].target.unit == "ms" else group[0].target.unit)
    ax.margins(x=0.35)


def _target_note(target: Target) -> str:
    if not target.has_target:
        return ""
    return f" (target {'≥' if target.goal == AT_LEAST else '≤'} {target.value:g})"


def write(out: Path, figures: list[Figure], context: dict) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    ordered = sorted(figures, key=lambda f: list(TARGETS).index(f.key))
    doc = document(ordered, context)
    (out / "latest.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "latest.md").write_text(markdown(doc, ordered), encoding="utf-8")
    plot(ordered, out / "latest.png")
    return doc
