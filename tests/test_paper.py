"""The paper studies (search_spaces/paper/): named rows compile, every study dry-runs with its cost,
published figures sit beside ours, and every study runs end to end at smoke scale."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mfer.config import ModelConfig
from mfer_platform.sweep import cost, plan
from mfer_platform.report.published import ABSENT, DSF_STANDIN, figure, row_figure
from mfer_platform.sweep.runner import describe
from mfer_platform.keys import ROW_KEY, SEED_KEY
from mfer_platform.overrides import trial_values
from mfer_platform.sweep.spaces import SpaceError, load_space, parse_space, spaces_root

STUDIES = sorted(p.stem for p in (spaces_root() / "paper").glob("*.yaml"))
SMOKE = Path(__file__).resolve().parents[1] / "mfer_platform" / "conf" / "scale" / "smoke.yaml"
TINY = ["data.image_size=32", "data.synthetic_train=70", "data.synthetic_test=35", "trainer.epochs=1",
        "model.attn_groups=0"]


def test_the_five_studies_ship():
    assert STUDIES == ["attention_variants", "component_ablation", "lambda_sensitivity", "loss_comparison",
                       "msc_scales"]


@pytest.mark.parametrize("study", STUDIES)
def test_study_dry_run_prints_trials_and_gpu_hours(study):
    space = load_space(f"paper/{study}")
    assert space.factors[0] == ROW_KEY and space.baseline[ROW_KEY] in space.rows
    assert space.search.seeds >= 3 and space.trial_count() == len(space.rows) * space.search.seeds
    cfg = space.base_config
    assert (cfg.model.backbone, cfg.data.name, cfg.data.image_size, space.resources.gpu) == \
        ("convnext_base", "rafdb", 224, 1)
    text = describe(space, study, "/tmp/unused")
    print(text)
    assert f"{space.trial_count()} trials" in text
    assert re.search(r"~[\d,.]+ GPU-hours", text) and "ASSUMED" in text and "12,271" in text
    assert "not the unpublished original" in space.description


def test_rows_are_a_grid_axis_and_trials_apply_their_overrides():
    space = load_space("paper/component_ablation")
    ps = plan.param_space(space)
    assert ps[ROW_KEY] == {"grid_search": list(space.rows)}
    values = trial_values({ROW_KEY: "baseline", SEED_KEY: 2}, 0, space.rows)
    assert values == {"model.attn_variant": "none", "model.msc_fractions": [], "loss.feature": "none", SEED_KEY: 2}


def _raw(**changes) -> dict:
    raw = {"base": ["model=mfer_atto"], "rows": {"a": {"model.attn_variant": "none"}, "b": {}},
           "baseline": {"row": "a"}, "search": {"algorithm": "grid"}, "scheduler": {"name": "none"}}
    return {**raw, **changes}


@pytest.mark.parametrize("changes, key, words", [
    ({"rows": {"a": {"model.atn_variant": "none"}}, "baseline": None}, "rows.a.model.atn_variant",
     "did you mean model.attn_variant"),
    ({"rows": {"a": {"model.attn_variant": "sparse"}}}, "rows.a", "rejected by the trainer"),
    ({"baseline": {"row": "c"}}, "baseline.row", "no row named 'c'"),
    ({"params": {"model.attn_variant": {"grid": ["ds"]}}}, "rows.a.model.attn_variant", "also varied"),
    ({"search": {"algorithm": "optuna_tpe"}, "params": {"optim.lr": {"choice": [1e-3]}}}, "search.algorithm", "row"),
])
def test_bad_rows_fail_naming_the_key(changes, key, words):
    with pytest.raises(SpaceError) as e:
        parse_space(_raw(**changes), "t", "t.yaml")
    assert f"t.yaml: {key}" in str(e.value) and words in str(e.value)


def test_smoke_scale_shrinks_a_study_but_keeps_its_dataset():
    preset = yaml.safe_load(SMOKE.read_text())
    sections = {f"{s}.{k}": v for s in ("search", "scheduler", "resources") for k, v in preset[s].items()}
    space = load_space("paper/msc_scales", sections, extra_base=preset["overrides"])
    assert (space.base_config.model.backbone, space.base_config.data.name) == ("convnext_atto", "synthetic")
    assert space.dataset == "rafdb" and space.trial_count() == len(space.rows) and space.resources.gpu == 0


def test_published_figures_carry_sources_and_kinds():
    mfer = figure("mfer", "rafdb")
    assert (mfer.value, mfer.kind) == (92.08, "published") and "TAFFC" in mfer.source
    assert figure("mfer", "affectnet8").value == 63.15 and figure("faer_full", "affectnet7").kind == "sibling"
    assert row_figure("component_ablation", "full_mfer", "ferplus").value == 91.09
    assert row_figure("loss_comparison", "center", "rafdb").cell() == ABSENT
    assert row_figure("component_ablation", "baseline", "ferplus").cell() == ABSENT  # FAER has no FERPlus


def test_measured_throughput_wins_over_the_flops_assumption(tmp_path):
    (tmp_path / "h100_convnext_base_224.json").write_text(json.dumps(
        {"device": "NVIDIA H100", "backbone": "convnext_base", "image_size": 224, "batch": 128, "images_per_s": 900.0}))
    assert cost.measured("convnext_base", 224, tmp_path).images_per_s == 900.0
    assert cost.measured("convnext_base", 112, tmp_path) is None
    atto, base = (cost.flops_based(ModelConfig(backbone=b), 224) for b in ("convnext_atto", "convnext_base"))
    assert "ASSUMED" in base.source and "counted" in base.source and atto.images_per_s > 10 * base.images_per_s


@pytest.mark.slow
def test_every_study_runs_at_smoke_scale_with_the_paper_column(tmp_path, ray_env):
    for study in STUDIES:
        out = subprocess.run(
            [sys.executable, "-m", "mfer_platform.cli.sweep", f"search_space=paper/{study}", "scale=smoke",
             f"name={study}", f"storage_path={tmp_path}", "wide=true",  # the full Markdown table, cells whole
             "overrides=[" + ",".join(f'"{o}"' for o in TINY) + "]"],
            env=ray_env, capture_output=True, text=True, timeout=1500)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        table = out.stdout[out.stdout.index("| group"):]
        print(table)
        rows = {line.split("|")[1].strip(): line for line in table.splitlines()
                if line.startswith("| ") and "row=" in line}
        assert len(rows) == len(load_space(f"paper/{study}").rows), rows
        assert "paper RAF-DB (%)" in table and ABSENT in table and "not comparable" in table
        if study == "component_ablation":
            full = next(line for label, line in rows.items() if "row=full_mfer" in label)
            assert "92.08 (published: MFER)" in full and DSF_STANDIN in full
            base = next(line for label, line in rows.items() if "row=baseline" in label)
            assert "90.74 (sibling" in base and DSF_STANDIN not in base


def test_report_sets_the_selected_models_per_class_test_accuracy_beside_the_papers():
    import pandas as pd

    from mfer_platform.report.plots import per_class_vs_paper

    classes = ["AN", "DI", "FE", "HA", "NE", "SA", "SU"]
    trial = pd.Series({"seed": 2, "test_per_class_acc": [0.8, 0.5, 0.6, 0.95, 0.85, 0.8, 0.88]})
    record = {"dataset": "rafdb", "base_config": {"data": {"name": "rafdb"}}}
    fig = per_class_vs_paper(trial, classes, record)
    ours, paper = fig.data
    # in %, as every table and figure of the report
    assert list(ours.y) == pytest.approx([100 * v for v in trial["test_per_class_acc"]]) and "1 seed" in ours.name
    assert list(paper.y) == pytest.approx([90, 73, 75, 97, 89, 87, 90])  # published.yaml, by class name
    assert "not comparable" not in fig.layout.title.text
    scaled_down = {"dataset": "rafdb", "base_config": {"data": {"name": "synthetic"}}}
    assert "not comparable" in per_class_vs_paper(trial, classes, scaled_down).layout.title.text
    assert per_class_vs_paper(trial, classes, {"dataset": "synthetic", "base_config": {}}) is None
