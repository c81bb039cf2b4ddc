"""A short soak (the full one is `make soak`): mixed load for a while, no errors, memory reported."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.fixtures.server import ROOT


def test_short_soak_has_no_errors_and_reports_memory(tmp_path):
    report_path = tmp_path / "soak.json"
    command = [sys.executable, "-m", "tools.soak", "--seconds", "15", "--concurrency", "4"]
    command += [
        "--json",
        str(report_path),
        "--server-log",
        str(tmp_path / "server.log"),
        "--max-growth",
        "0.25",
    ]
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["errors"] == {} and report["calls"] > 100
    assert len(report["rss_mib"]) == 10 and all(m > 0 for m in report["rss_mib"])
    assert report["rss_growth_after_warmup"] < 0.25  # 15 s is mostly warm-up; the 5% goal is make soak's
