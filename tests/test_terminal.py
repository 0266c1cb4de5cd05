"""What the commands print fits 100 columns by default (``wide=true``: full width): the sweep's
progress lines and the final comparison table, with long parameter names and values."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from mfer_platform.keys import COMPARED_METRICS
from mfer_platform.report.tables import to_markdown, to_terminal
from mfer_platform.results.stats import CompareSpec, compare
from mfer_platform.sweep.progress import LiveTable

LONG = {"optim.lr": 0.0005431, "loss.feature": "dsf_stand_in_with_a_long_name", "loss.weight": 0.0001335,
        "model.attn_variant": "ds", "model.msc_fractions": [0.5, 0.75, 1.0],
        "data.a_rather_long_parameter_name_for_augmentation": "random_erasing_with_a_long_value"}


def _comparison():
    rng = np.random.default_rng(0)
    rows = []
    for g in range(4):
        values = {**LONG, "optim.lr": LONG["optim.lr"] * (g + 1), "model.attn_variant": ["ds", "none"][g % 2]}
        for seed in range(3):
            rows.append({"trial_id": f"{g}-{seed}", **values, "seed": seed, "status": "completed",
                         "epochs_run": 2, "epochs_planned": 2, "cpu_seconds": 1.0, "gpu_seconds": 0.0,
                         **{m: float(rng.uniform(0.3, 0.9)) for m in COMPARED_METRICS}})
    return compare(pd.DataFrame(rows), CompareSpec(list(LONG), "val_acc", "max"))


def test_the_final_table_fits_100_columns_and_keeps_what_matters():
    cmp = _comparison()
    text = to_terminal(cmp)
    assert max(len(line.encode()) for line in text.splitlines()) <= 100, text
    assert max(len(line) for line in to_markdown(cmp).splitlines()) > 200  # what wide=true prints
    assert to_terminal(cmp, width=None) == to_markdown(cmp)
    head, note = text.split("\n\n")[0], text.split("CIs and tests are in comparison.md")[1].split("\n\n")[0]
    assert "val acc (%)" in head and "Δ" in head, head  # the selection metric and its Δ come first
    assert "test macro-F1" in note and "Δ" not in note and "val acc (%)" not in note.replace("\n", " ")
    for i in range(1, 5):  # G1…G4 in the table, each with its full configuration in the legend
        assert f"G{i} = " in text
    legend = " ".join(text.split("G1 = ")[1].split("\n\n")[0].split())
    assert "random_erasing_with_a_long_value" in legend and "msc_fractions=[0.5,0.75,1.0]" in legend
    assert "★ G1" in head and "CIs and tests are in comparison.md" in text


def _trial(i: int, **extra):
    return SimpleNamespace(trial_id=f"trial_{i:05d}", config={**LONG, "__trial_index__": 0}, last_result={"epoch": 2},
                           path="/a/very/long/storage/path/" + "x" * 120, error_msg="Traceback\nValueError: " + "y" * 150,
                           **extra)


def _progress_lines(capsys, width) -> list[str]:
    live = LiveTable("val_acc", "max", epochs=2, total_trials=8, slots=2, every_s=0.0, width=width)
    for i in range(3):
        live.on_trial_start(0, [], _trial(i))
        live.on_trial_result(0, [], _trial(i), {"val_acc": 0.5 + i / 10, "epoch_s": 3.0, "epoch": 1})
    live.on_trial_complete(0, [], _trial(0))
    live.on_trial_error(0, [], _trial(1))
    return capsys.readouterr().out.splitlines()


def test_progress_lines_fit_100_columns_with_the_best_config_last(capsys):
    lines = _progress_lines(capsys, 100)
    assert len(lines) >= 6 and max(len(line.encode()) for line in lines) <= 100, lines
    assert "of 8: 1 running, 1 done, 0 stopped, 1 errored | ETA" in lines[-1] and "best val_acc 0.7000 lr=" in lines[-1]
    assert any("! trial trial_00001 errored: ValueError" in line for line in lines)
    wide = _progress_lines(capsys, None)
    assert any("augmentation=random_erasing_with_a_long_value" in line and len(line) > 100 for line in wide)


def test_a_long_plan_line_wraps_under_its_value_and_loses_nothing():
    from mfer_platform.terminal import wrap_lines

    line = "  base overrides : " + " ".join(f"data.option_{i}=value_{i}" for i in range(12))
    text = wrap_lines(f"sweep 'x'\n{line}")
    assert max(len(ln.encode()) for ln in text.splitlines()) <= 100 and len(text.splitlines()) > 2
    assert text.split() == f"sweep 'x'\n{line}".split()
    assert all(ln.startswith(" " * 19) for ln in text.splitlines()[2:])
    assert wrap_lines(line, None) == line
