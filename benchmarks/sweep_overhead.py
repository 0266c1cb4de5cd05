"""Orchestration overhead: the same trials, the same ``mfer.train.fit``, three ways.

1. **Optuna alone, in-process** — what a researcher would write without a platform:
   ``study.optimize(objective, n_jobs=slots)`` where ``objective`` calls ``fit``;
2. **a hand-written Ray Tune trainable** around ``fit`` (``tune.report`` per epoch, the
   checkpoint ``fit`` hands over, a local Ray instance);
3. **the platform**: ``run_sweep`` + ``ingest`` + the comparison, as ``mfer-sweep`` runs them.

Every way trains the same configurations (a grid over ``optim.lr``) with one torch thread per
trial and ``slots`` trials at a time, on the same packed data cache. The runs are interleaved
(Optuna, Tune, platform, Optuna, …) and the median of ``--repeats`` is reported, with where the
platform's extra seconds go (Ray start, building the data cache, the Tuner, ingest, comparison)
and how much of each trial's wall time was spent outside ``fit``.

    python benchmarks/sweep_overhead.py [--trials 4] [--epochs 3] [--repeats 3] [--slots 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

BASE = ["model=mfer_atto", "data.image_size=64", "data.synthetic_train=600", "data.synthetic_test=140"]


def _lrs(n: int) -> list[float]:
    return [round(3e-4 * (10 ** (i / max(1, n - 1))), 6) for i in range(n)]


def _space(args):
    from mfer_platform.sweep.spaces import parse_space

    raw = {"description": "overhead benchmark", "base": [*BASE, f"trainer.epochs={args.epochs}"],
           "params": {"optim.lr": {"grid": _lrs(args.trials)}},
           "search": {"algorithm": "grid", "max_concurrent": args.slots}, "scheduler": {"name": "none"},
           "resources": {"cpu": 1}}
    return parse_space(raw, "overhead", "benchmarks/sweep_overhead.py")


def _cfg(space, lr: float):
    from mfer_platform.overrides import apply_overrides

    return apply_overrides(space.base_dict, {"optim.lr": lr, "trainer.seed": 0, "trainer.threads": 1})


def optuna_in_process(space, args, work: Path) -> dict:
    import optuna
    import torch

    from mfer.train import fit

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lrs = _lrs(args.trials)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_categorical("optim.lr", lrs)
        return fit(_cfg(space, lr), work / f"optuna-{trial.number}")["val_acc"]

    t0 = time.perf_counter()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.GridSampler({"optim.lr": lrs}))
    study.optimize(objective, n_trials=len(lrs), n_jobs=args.slots)
    return {"wall": time.perf_counter() - t0}


def _hand_written_trial(config: dict, space=None) -> None:
    from ray import tune

    from mfer.train import fit

    def report(end) -> None:
        ckpt = tune.Checkpoint.from_directory(str(end.checkpoint_dir)) if end.checkpoint_dir else None
        tune.report(end.metrics, checkpoint=ckpt)

    fit(_cfg(space, config["lr"]), tempfile.mkdtemp(prefix="hand-"), on_epoch=report)


def hand_written_tune(space, args, work: Path) -> dict:
    import ray
    from ray import tune

    t0 = time.perf_counter()
    ray.init(num_cpus=args.slots, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        trainable = tune.with_resources(tune.with_parameters(_hand_written_trial, space=space), {"cpu": 1})
        tune.Tuner(trainable, param_space={"lr": tune.grid_search(_lrs(args.trials))},
                   tune_config=tune.TuneConfig(metric="val_acc", mode="max", reuse_actors=True),
                   run_config=tune.RunConfig(storage_path=str(work / "hand"), verbose=0)).fit()
    finally:
        ray.shutdown()
    return {"wall": time.perf_counter() - t0}


@contextmanager
def _timed(module, name: str, into: dict, key: str):
    """Time every call of ``module.name`` into ``into[key]`` while the block runs."""
    real = getattr(module, name)

    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            into[key] = into.get(key, 0.0) + time.perf_counter() - t0

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, real)


def platform(space, args, work: Path) -> dict:
    from mfer_platform.results import store
    from mfer_platform.results.summary import compare_experiments
    from mfer_platform.sweep import runner

    parts: dict[str, float] = {}
    storage = str(work / "store")
    t0 = time.perf_counter()
    with _timed(runner, "connect", parts, "Ray start"), _timed(runner, "_prepare_data_once", parts, "data cache"), \
            _timed(runner, "check_resources", parts, "resource check"):
        experiments = runner.run_sweep(runner.SweepRequest(space, "bench", storage,
                                                           runner.ClusterSettings(num_cpus=args.slots)))
    parts["Tuner (trials)"] = time.perf_counter() - t0 - sum(parts.values())
    t1 = time.perf_counter()
    for name in experiments:
        store.ingest(storage, name)
    parts["ingest"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    res = compare_experiments(storage, experiments)
    parts["comparison"] = time.perf_counter() - t1
    return {"wall": time.perf_counter() - t0, "parts": parts, "trial_wall": float(res.trials["wall_s"].sum()),
            "in_fit": float(res.epochs["epoch_s"].sum())}


WAYS = {"Optuna alone, in-process": optuna_in_process, "hand-written Ray Tune trainable": hand_written_tune,
        "mfer-sweep (run, ingest, compare)": platform}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--slots", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mfer-overhead-"))
    os.environ.setdefault("MFER_CACHE", str(work / "cache"))
    space = _space(args)
    from mfer.data.registry import load_dataset

    load_dataset(space.base_config.data)  # the packed cache exists before any way is timed
    runs: dict[str, list[dict]] = {w: [] for w in WAYS}
    for r in range(args.repeats):
        for way, fn in WAYS.items():
            runs[way].append(fn(space, args, work / f"{r}-{len(runs[way])}-{fn.__name__}"))
            print(f"  repeat {r + 1}: {way}: {runs[way][-1]['wall']:.1f} s", flush=True)
    med = {w: statistics.median(x["wall"] for x in rs) for w, rs in runs.items()}
    ref = med["Optuna alone, in-process"]
    print(f"\n{args.trials} trials x {args.epochs} epochs, {args.slots} at a time, 1 torch thread each; "
          f"median of {args.repeats} interleaved runs")
    print("| way | wall (s) | speed vs Optuna in-process |\n|---|---:|---:|")
    for way, wall in med.items():
        print(f"| {way} | {wall:.1f} | {ref / wall:.2f}x |")
    best = min(runs["mfer-sweep (run, ingest, compare)"], key=lambda x: abs(x["wall"] - med["mfer-sweep (run, ingest, compare)"]))
    print("\nwhere the platform's seconds went (the median run):")
    for part, seconds in best["parts"].items():
        print(f"  {part:<16} {seconds:6.1f} s")
    print(f"  inside the trials: {best['trial_wall']:.1f} trial-seconds in all, {best['in_fit']:.1f} of them in "
          f"fit's epochs (training + validation); the rest is set-up, checkpoints and reporting")


if __name__ == "__main__":
    main()
