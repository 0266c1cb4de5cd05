"""Benchmark: ingest a 10 000-trial sweep into the results store and build its comparison tables.

    .venv/bin/python benchmarks/store_tables.py [--trials 10000] [--epochs 4] [--groups 200]

Writes a synthetic experiment the way a sweep leaves it (per trial: params.json, result.json
with one line per epoch, checkpoint_*/meta.json and a state.pt holding the selected epoch's
validation result — no weights), then times, separately: reading the trial folders, writing
the two Parquet tables, re-ingesting (idempotent replace), and building the tables (grouping,
mean/std/CI, paired tests, Holm, Markdown/CSV/LaTeX). Setup is not timed.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mfer.config import TrainConfig, to_dict
from mfer_platform.layout import read_sweep_record
from mfer_platform.results import store
from mfer_platform.results.stats import compare, spec_from_record
from mfer_platform.report.tables import to_csv, to_latex, to_markdown

CLASSES = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
VARIANTS = ["none", "global", "local", "ds"]


def write_experiment(root: Path, name: str, trials: int, epochs: int, groups: int, rng: np.random.Generator) -> None:
    base = to_dict(TrainConfig())
    base["trainer"]["epochs"] = epochs
    weights = np.geomspace(1e-4, 1e-1, max(1, groups // len(VARIANTS)))
    exp = root / name
    exp.mkdir(parents=True)
    record = {"name": name, "factors": ["model.attn_variant", "loss.weight"], "seed_key": "trainer.seed",
              "metric": "val_acc", "mode": "max", "objectives": {}, "base_config": base,
              "baseline": {"model.attn_variant": "none", "loss.weight": float(weights[0])},
              "searcher": {"algorithm": "grid", "first_seed": 0}, "scheduler": {"name": "none"},
              "resources": {"cpu": 1, "gpu": 0.5}}
    (exp / "mfer_sweep.json").write_text(json.dumps(record))
    for i in range(trials):
        variant, weight, seed = VARIANTS[i % len(VARIANTS)], float(weights[(i // len(VARIANTS)) % len(weights)]), i // groups
        params = {"model.attn_variant": variant, "loss.weight": weight, "trainer.seed": seed}
        cfg = {**base, "model": {**base["model"], "attn_variant": variant}, "loss": {**base["loss"], "weight": weight},
               "trainer": {**base["trainer"], "seed": seed}}
        trial_id = f"{i:08x}"
        d = exp / f"run_trial_{trial_id}_{i}"
        ckpt = d / f"checkpoint_{epochs - 1:06d}"
        ckpt.mkdir(parents=True)
        (d / "params.json").write_text(json.dumps(params))
        acc = np.clip(0.8 + 0.02 * VARIANTS.index(variant) + rng.normal(0, 0.01, epochs).cumsum() / 4, 0, 1)
        rows = [{"epoch": e + 1, "train_loss": 1.0 / (e + 1), "val_acc": float(acc[e]), "val_mean_class_acc": float(acc[e]),
                 "val_macro_f1": float(acc[e]), "val_loss": 0.5, "lr": 1e-3, "epoch_s": 30.0, "train_images_per_s": 500.0,
                 "selected_epoch": int(np.argmax(acc[: e + 1]) + 1), "best_val_acc": float(acc[: e + 1].max()),
                 "images_per_s": 500.0, "params": 3_500_000, "trial_id": trial_id, "training_iteration": e + 1,
                 "time_total_s": 30.0 * (e + 1), "config": params} for e in range(epochs)]
        rows[-1].update(test_acc=float(acc.max() - 0.01), test_mean_class_acc=0.8, test_macro_f1=0.8, test_loss=0.6)
        (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        cm = rng.integers(0, 20, (len(CLASSES), len(CLASSES))) + np.eye(len(CLASSES), dtype=int) * 100
        meta = {"params": 3_500_000, "classes": CLASSES, "config": cfg, "config_hash": f"{i:016x}",
                "dataset_fingerprint": "0" * 16, "git_commit": "bench", "device": "cuda", "amp": "bf16"}
        (ckpt / "meta.json").write_text(json.dumps(meta))
        val = {"per_class_acc": (np.diag(cm) / cm.sum(1)).tolist(), "confusion": cm.tolist()}
        torch.save({"best": {"epoch": rows[-1]["selected_epoch"], "val": val}}, ckpt / "state.pt")


def timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    print(f"{label:<44} {time.perf_counter() - t0:7.2f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--groups", type=int, default=200, help="configurations; trials / groups seeds each")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_experiment(root, "bench", args.trials, args.epochs, args.groups, np.random.default_rng(0))
        print(f"setup: {args.trials} trial folders, {args.epochs} epochs, {args.groups} groups "
              f"({time.perf_counter() - t0:.0f} s, not timed)")
        data = timed("read trial folders (store.collect)", lambda: store.collect(str(root), "bench"))
        summary = timed("ingest: read + write both tables", lambda: store.ingest(str(root), "bench"))
        timed("re-ingest (replace the experiment's rows)", lambda: store.ingest(str(root), "bench"))
        trials = timed("load trials.parquet", lambda: store.load_trials(str(root), "bench"))
        cmp = timed("compare (groups, mean/std/CI, tests, Holm)",
                    lambda: compare(trials, spec_from_record(read_sweep_record(str(root), "bench"))))
        timed("render Markdown + CSV + LaTeX", lambda: (to_markdown(cmp), to_csv(cmp), to_latex(cmp)))
        print(f"-> {summary.trials} trials ({data.trials.num_rows} read), {summary.epochs} epoch rows, "
              f"{len(cmp.groups)} groups of n={int(cmp.groups['n'].median())}; best: {cmp.best}")


if __name__ == "__main__":
    main()
