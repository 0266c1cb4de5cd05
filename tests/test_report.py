"""mfer-report on a really-trained sweep: tables and one self-contained HTML that renders in Chromium."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from mfer_platform.report.plots import pareto_figure

from .fake_sweep import EXPERIMENT, clone

FIGURES = ("sweep", "ablation", "learning-curves", "per-class-accuracy", "confusion-matrices", "test-confusion-matrix",
           "feature-embedding", "compute")


@pytest.fixture(scope="module")
def report_dir(fake_sweep, tmp_path_factory):
    """Run the installed console script once, from a scratch working directory."""
    work = tmp_path_factory.mktemp("report")
    storage = clone(fake_sweep, work / "sweeps")
    script = Path(sys.executable).with_name("mfer-report")
    out = subprocess.run([str(script), f"storage_path={storage}", f"name={EXPERIMENT}", "output_dir=out"],
                         cwd=work, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "★ attn_variant=" in out.stdout and "(n=2)" in out.stdout
    assert sorted(p.name for p in work.iterdir()) == ["out", "sweeps"]  # no Hydra outputs/ or logs left behind
    return work / "out"


def test_report_writes_tables_and_a_self_contained_html(report_dir):
    assert {p.name for p in report_dir.iterdir()} == {"comparison.md", "comparison.csv", "comparison.tex", "report.html",
                                                      "gradcam"}
    page = (report_dir / "report.html").read_text()
    assert not re.search(r"<(script|img)[^>]+src=\"(?!data:)", page)  # plotly.js and PNGs are inlined: opens offline
    assert page.count("Plotly.newPlot") == len(FIGURES)
    grids = sorted((report_dir / "gradcam").glob("*.png"))
    assert grids and len(re.findall(r'<img [^>]*src="data:image/png;base64,', page)) == len(grids)
    assert "val compactness ↓" in page
    csv = pd.read_csv(report_dir / "comparison.csv")
    assert set(csv["n"]) == {2} and csv["is_reference"].any()  # 2 seeds per group; the named baseline
    assert "attn_variant=none (baseline)" in (report_dir / "comparison.md").read_text()


def test_report_renders_in_headless_chromium(report_dir):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium): cannot check rendering")
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--virtual-time-budget=10000", "--dump-dom", (report_dir / "report.html").as_uri()],
            capture_output=True, text=True, timeout=120)
    dom = out.stdout
    assert "<table class=\"comparison\"" in dom, out.stderr[-2000:]
    for section in dom.split("<section>")[1:]:
        match = re.search(r'<div id="([\w-]+)"[^>]*class="[^"]*plotly-graph-div', section)
        if match:
            assert 'class="main-svg"' in section, f"figure {match.group(1)} did not render"
    rendered = re.findall(r'<div id="([\w-]+)"[^>]*class="[^"]*plotly-graph-div', dom)
    assert sorted(rendered) == sorted(FIGURES)


def test_pareto_figure_marks_the_non_dominated_trials():
    trials = pd.DataFrame({"trial_id": list("abcd"), "status": "completed", "val_acc": [0.8, 0.9, 0.85, 0.7],
                           "params": [1e6, 2e6, 3e6, 1.5e6]})
    fig = pareto_figure(trials, "val_acc", "max", {"params": "min", "absent": "min"})
    front = fig.data[1]
    assert list(front.text) == ["a", "b"] and front.name == "Pareto front (n=2)"
    assert pareto_figure(trials, "val_acc", "max", {}) is None
