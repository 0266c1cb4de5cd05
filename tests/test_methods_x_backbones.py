"""The methods x backbones study (search_spaces/peers/methods_x_backbones): its cross table — each cell
the Δ vs its own backbone's baseline, checked against paired/Welch t values computed by hand here — and
the study's plan at smoke scale, every cell a config the trainer accepts."""
from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from mfer_platform.keys import ROW_KEY
from mfer_platform.report.tables import cross_csv, cross_html, cross_latex, cross_markdown, cross_terminal
from mfer_platform.results.stats import PAIRED, WELCH, CompareSpec, compare, cross_compare
from mfer_platform.terminal import columns

B = "model.backbone"
ODD = "dan<|>"  # a row name every format must escape
# backbone -> row -> {seed: (val_acc, test_acc)}. On resnet18, ODD ran other seeds than its baseline (Welch).
RUNS = {
    "convnext_atto": {"baseline": {0: (0.50, 0.40), 1: (0.54, 0.44), 2: (0.52, 0.41)},
                      "mfer": {0: (0.55, 0.47), 1: (0.60, 0.49), 2: (0.56, 0.45)},
                      ODD: {0: (0.49, 0.38), 1: (0.55, 0.43), 2: (0.50, 0.40)}},
    "resnet18": {"baseline": {0: (0.30, 0.31), 1: (0.36, 0.33), 2: (0.33, 0.30)},
                 "mfer": {0: (0.31, 0.29), 1: (0.35, 0.36), 2: (0.36, 0.34)},
                 ODD: {3: (0.40, 0.42), 4: (0.44, 0.39)}},
}
SPEC = CompareSpec([ROW_KEY, B], "val_acc", "max", {ROW_KEY: "baseline", B: "convnext_atto"},
                   metrics=("val_acc", "test_acc"))
ORDER = ["baseline", "mfer", ODD]


def _trials() -> pd.DataFrame:
    rows = [{"trial_id": f"{b}-{r}-{s}", ROW_KEY: r, B: b, "seed": s, "status": "completed", "val_acc": va,
             "test_acc": te}
            for b, by_row in RUNS.items() for r, seeds in by_row.items() for s, (va, te) in seeds.items()]
    rows.append({"trial_id": "err", ROW_KEY: "mfer", B: "resnet18", "seed": 5, "status": "error", "val_acc": None,
                 "test_acc": None})
    return pd.DataFrame(rows)


def _acc(b: str, r: str, col: int = 1) -> np.ndarray:
    return np.array([v[col] for v in RUNS[b][r].values()])


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Student's paired t: mean(d) ± t_{0.975, n-1} · sd(d)/√n."""
    d = a - b
    half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return d.mean(), d.mean() - half, d.mean() + half


def test_each_cell_is_the_delta_vs_its_own_backbones_baseline_by_hand():
    cross = cross_compare(_trials(), SPEC, ORDER)
    assert cross.rows == ORDER and list(cross.columns) == ["backbone=convnext_atto", "backbone=resnet18"]
    for b in RUNS:
        s = cross.stat("mfer", f"backbone={b}", "test_acc")
        delta, lo, hi = _paired(_acc(b, "mfer"), _acc(b, "baseline"))  # against this backbone's baseline
        assert (s["test"], s["n_pairs"]) == (PAIRED, 3)
        assert (s["delta"], s["delta_ci_low"], s["delta_ci_high"]) == (pytest.approx(delta), pytest.approx(lo),
                                                                        pytest.approx(hi))
    welch = cross.stat(ODD, "backbone=resnet18", "test_acc")
    ref = sps.ttest_ind(_acc("resnet18", ODD), _acc("resnet18", "baseline"), equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert (welch["test"], welch["n"]) == (WELCH, 2)
    assert (welch["delta_ci_low"], welch["delta_ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    base = cross.stat("baseline", "backbone=resnet18", "test_acc")  # absolute, the error left out
    x = _acc("resnet18", "baseline")
    half = sps.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
    assert (base["n"], base["mean"], base["ci_low"]) == (3, pytest.approx(x.mean()), pytest.approx(x.mean() - half))
    # the usual comparison of the same trials holds one reference for all: ConvNeXt's baseline
    whole = compare(_trials(), SPEC)
    assert whole.stat("row=mfer, backbone=resnet18", "test_acc")["delta"] == pytest.approx(
        _acc("resnet18", "mfer").mean() - _acc("convnext_atto", "baseline").mean())


def test_the_cross_table_names_n_everywhere_and_escapes_every_format():
    cross = cross_compare(_trials(), SPEC, ORDER)
    md = cross_markdown(cross)
    table = md[md.index("| test acc"):]
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    x = _acc("convnext_atto", "baseline")
    assert f"{100 * x.mean():.2f} ± {100 * x.std(ddof=1):.2f} [" in lines["baseline"]
    assert lines["baseline"].count("(n=3)") == 2 and "Δ" not in lines["baseline"]
    delta, lo, hi = _paired(_acc("resnet18", "mfer"), _acc("resnet18", "baseline"))
    assert f"{100 * delta:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]" in lines["mfer"]
    assert lines["mfer"].count("n=3 pairs") == 2
    assert r"dan<\|>" in lines and "n=2 vs 3" in lines[r"dan<\|>"] and "Welch t" in lines[r"dan<\|>"]
    html = cross_html(cross)
    assert "dan&lt;|&gt;" in html and "<td>dan<" not in html and "n=3 pairs" in html
    tex = cross_latex(cross)
    assert r"dan$<$|$>$" in tex and r"(\%) by backbone & convnext\_atto & resnet18" in tex and r"$\pm$" in tex
    csv = pd.read_csv(io.StringIO(cross_csv(cross)))
    got = csv[(csv["column"] == "backbone=resnet18") & (csv["group"] == "row=mfer") & (csv["metric"] == "test_acc")]
    assert got.iloc[0]["delta"] == pytest.approx(delta) and got.iloc[0]["n_pairs"] == 3
    text = cross_terminal(cross, width=100)
    print(text)
    assert all(columns(line) <= 100 for line in text.splitlines())
    mfer = next(line for line in text.splitlines() if line.startswith("mfer"))
    assert mfer.count("(n=3)") == 2 and mfer.count("[") == 2  # each Δ with its CI and n


def test_a_sweep_without_a_second_factor_or_baseline_row_has_no_cross_table():
    one = _trials()[lambda t: t[B] == "resnet18"]
    assert cross_compare(one, CompareSpec([ROW_KEY], baseline={ROW_KEY: "baseline"})) is None
    assert cross_compare(_trials(), CompareSpec([ROW_KEY, B])) is None
    # a backbone whose baseline never completed: its cells say so, the other column stands
    t = _trials()
    t.loc[(t[B] == "resnet18") & (t[ROW_KEY] == "baseline"), "status"] = "error"
    cross = cross_compare(t, SPEC, ORDER)
    assert cross.columns["backbone=resnet18"] is None and "no completed baseline" in cross_markdown(cross)


# ---------------------------------------------------------------- the study itself
SCHEME_ROWS = {"ada_df", "dnfer", "mafer"}
SMOKE_BACKBONES = {"convnext_atto", "resnet18", "vit_tiny_patch16_224"}


def _study(tmp_path) -> tuple[str, dict]:
    """The shipped study, less the rows of training schemes not registered yet (then it is the shipped
    file itself: once mfer.schemes.SCHEMES has ada_df, dnfer and mafer, nothing is left out)."""
    from mfer.schemes import SCHEMES
    from mfer_platform.sweep.spaces import resolve_space_file

    shipped = resolve_space_file("peers/methods_x_backbones")
    raw = yaml.safe_load(shipped.read_text())
    missing = {r for r, o in raw["rows"].items() if (o or {}).get("scheme.name", "standard") not in SCHEMES}
    assert missing <= SCHEME_ROWS and SCHEME_ROWS <= set(raw["rows"]), missing
    if not missing:
        return str(shipped), raw
    raw["rows"] = {r: o for r, o in raw["rows"].items() if r not in missing}
    path = tmp_path / "methods_x_backbones.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path), raw


def test_every_cell_is_a_valid_config_at_full_and_smoke_scale(tmp_path):
    """The study compiles at both scales, which checks every (method, backbone) cell as its trial builds
    it (spaces._check_cells); a few cells as built: the backbone's own default weights at full scale,
    a CPU-sized model of each family with random weights at smoke scale, MFER without DS attention on
    the ViT (no stage to follow) and with it on ConvNeXt."""
    from hydra import compose, initialize_config_module

    from mfer_platform.cli.sweep import requested_space
    from mfer_platform.overrides import apply_overrides, trial_values

    path, raw = _study(tmp_path)
    with initialize_config_module("mfer_platform.conf", version_base="1.3"):
        full, smoke = (compose("sweep", overrides=[f"search_space={path}", *extra])
                       for extra in ([], ["scale=smoke", "search.seeds=2"]))
    full_weights = {"convnext_base": "convnext_base.fb_in22k_ft_in1k", "resnet18": "resnet18.a1_in1k",
                    "vit_base_patch16_224": "vit_base_patch16_224.augreg2_in21k_ft_in1k"}
    for cfg, weights, seeds in ((full, full_weights, 3), (smoke, dict.fromkeys(SMOKE_BACKBONES), 2)):
        space = requested_space(cfg)
        assert space.trial_count() == len(raw["rows"]) * 3 * seeds and space.factors == [ROW_KEY, B]
        assert set(space.params[0].values) == set(weights) and space.baseline[B] in weights
        convnext, vit = (next(b for b in space.params[0].values if b.startswith(f)) for f in ("convnext", "vit"))
        cells = {(r, b): apply_overrides(space.base_dict, trial_values({ROW_KEY: r, B: b}, 0, space.rows)).model
                 for r in ("baseline", "mfer") for b in ((convnext, vit) if r == "mfer" else weights)}
        assert all((m.backbone, m.pretrained) == (b, weights[b]) for (_, b), m in cells.items())
        assert cells["mfer", vit].attn_stages == [] and cells["mfer", convnext].attn_stages == [3, 4]
        assert cells["baseline", vit].method == "baseline" and cells["mfer", vit].msc_fractions == [0.5, 0.75, 1.0]
        assert (space.base_config.data.name, space.resources.gpu) == (("synthetic", 0) if seeds == 2 else ("rafdb", 1))


def test_the_documented_smoke_command_dry_runs(tmp_path, cli):
    """``mfer-sweep search_space=peers/methods_x_backbones scale=smoke search.seeds=2 dry_run=true``: 3
    backbones x every row x 2 seeds, the smoke backbones named in the plan."""
    path, raw = _study(tmp_path)
    out = cli("mfer_platform.cli.sweep", f"search_space={path}", "scale=smoke", "search.seeds=2", "dry_run=true",
              "name=mxb", f"storage_path={tmp_path}")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert f"{len(raw['rows']) * 3 * 2} trials (2 seeds each)" in out.stdout, out.stdout
    assert all(b in out.stdout for b in SMOKE_BACKBONES) and "dry run: nothing launched" in out.stdout


def _space(**changes) -> dict:
    raw = {"base": ["model=mfer_atto", "data=synthetic"], "params": {B: {"grid": ["convnext_atto", "resnet18"]}},
           "rows": {"plain": {"model.attn_variant": "none", "model.msc_fractions": []}, "mfer": {}},
           "baseline": {"row": "plain", B: "convnext_atto"}, "search": {"algorithm": "grid"},
           "scheduler": {"name": "none"}}
    return {**raw, **changes}


def test_a_cell_refused_by_the_trainer_fails_naming_its_row_and_values():
    """Each row and each backbone alone are fine; MFER's attention stages on a ViT are not."""
    from mfer_platform.sweep.spaces import SpaceError, parse_space

    bad = _space(params={B: {"grid": ["convnext_atto", "vit_tiny_patch16_224"]}},
                 rows={"plain": {"model.attn_variant": "none"}, "staged": {"model.attn_stages": [3, 4]}})
    with pytest.raises(SpaceError) as e:
        parse_space(bad, "t", "t.yaml")
    assert "t.yaml: rows.staged: with {'model.backbone': 'vit_tiny_patch16_224'}" in str(e.value)
    assert "not hierarchical" in str(e.value)


def test_a_scale_swaps_a_studys_values_in_its_axis_rows_and_baseline():
    from mfer_platform.sweep.spaces import SpaceError, parse_space

    raw = _space(params={B: {"grid": ["convnext_base", "resnet18"]}},
                 rows={"plain": {"model.attn_variant": "none", "model.msc_fractions": [], B: "convnext_base"}},
                 baseline={"row": "plain"})
    raw.pop("params")
    swaps = {B: {"convnext_base": "convnext_atto", "vit_base_patch16_224": "vit_tiny_patch16_224"}}
    space = parse_space(raw, "t", "t.yaml", swaps=swaps)
    assert space.rows["plain"][B] == "convnext_atto" and raw["rows"]["plain"][B] == "convnext_base"  # a copy
    space = parse_space(_space(params={B: {"grid": ["convnext_base", "resnet18", "vit_base_patch16_224"]}},
                               baseline={"row": "plain", B: "convnext_base"}), "t", "t.yaml", swaps=swaps)
    assert space.params[0].values == ["convnext_atto", "resnet18", "vit_tiny_patch16_224"]
    assert space.baseline == {"row": "plain", B: "convnext_atto"}
    with pytest.raises(SpaceError, match=r"t.yaml: params.model.backbone.grid: .* two of them alike"):
        parse_space(_space(params={B: {"grid": ["convnext_base", "convnext_atto"]}}), "t", "t.yaml", swaps=swaps)


def test_default_weights_follow_the_backbone_and_are_recorded_by_tag():
    from mfer.config import ConfigError

    from .conftest import compose_train

    for backbone, weights in (("resnet18", "resnet18.a1_in1k"), ("convnext_atto", "convnext_atto.d2_in1k")):
        assert compose_train(f"model.backbone={backbone}", "model.pretrained=default").model.pretrained == weights
    with pytest.raises(ConfigError, match=r"model\.pretrained='default': timm lists no pretrained weights for "
                                          r"model\.backbone=resnet200: set model\.pretrained=null"):
        compose_train("model.backbone=resnet200", "model.pretrained=default")
