"""Orchestration overhead: the same trials, the same ``mfer.train.fit``, three ways.

1. **Optuna alone, in-process** — what a researcher would write without a platform:
   ``study.optimize(objective, n_jobs=slots)`` where ``objective`` calls ``fit``;
2. **a hand-written Ray Tune trainable** around ``fit`` (``tune.report`` per epoch, the
   checkpoint ``fit`` hands over, a local Ray instance);
3. **the platform**: ``run_sweep`` + ``ingest`` + the comparison, as ``mfer-sweep`` runs them.

Every way trains the same configurations (a grid over ``optim.lr``) with one torch thread per
trial and ``slots`` trials at a time, on the same packed data cache. The runs are interleaved
(Optuna, Tune, platform, Optuna, …) and the median of ``--repeats`` is reported, with where the
platform's seconds went: on the driver (Ray start, the data cache, the Tuner, the final uploads, ingest,
the comparison and its tables) and inside each trial, from the driver's trial ledger (when Tune started
and completed it) and the trial's own record (``_instrumented``: when its actor entered ``run_trial``,
when ``fit`` was called, each report hook call and each ``tune.report`` in it) — actor start, imports,
fit's set-up, epochs, checkpoint serialisation, the report hook (upload waits and Ray's own copy inside
``tune.report``) — the first trial on each actor apart from those on a reused one.

    python benchmarks/sweep_overhead.py [--trials 4] [--epochs 3] [--repeats 3] [--slots 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable
from unittest import mock

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


def _hand_written_trial(config: dict, space, log: str) -> None:
    from ray import tune

    from mfer.train import fit

    first: list[float] = []  # when the first epoch was reported (Unix time), for the start-up latency

    def report(end) -> None:
        if not first:
            first.append(time.time())
        ckpt = tune.Checkpoint.from_directory(str(end.checkpoint_dir)) if end.checkpoint_dir else None
        tune.report(end.metrics, checkpoint=ckpt)

    fit(_cfg(space, config["lr"]), tempfile.mkdtemp(prefix="hand-"), on_epoch=report)
    with open(log, "a") as f:
        f.write(json.dumps({"first_report": first[0]}) + "\n")


def hand_written_tune(space, args, work: Path) -> dict:
    import ray
    from ray import tune

    log, started, t0 = work / "first_reports.jsonl", time.time(), time.perf_counter()
    ray.init(num_cpus=args.slots, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    ray_start = time.perf_counter() - t0
    try:
        trainable = tune.with_resources(tune.with_parameters(_hand_written_trial, space=space, log=str(log)),
                                        {"cpu": 1})
        tune.Tuner(trainable, param_space={"lr": tune.grid_search(_lrs(args.trials))},
                   tune_config=tune.TuneConfig(metric="val_acc", mode="max", reuse_actors=True),
                   run_config=tune.RunConfig(storage_path=str(work / "hand"), verbose=0)).fit()
    finally:
        ray.shutdown()
    first = min(json.loads(line)["first_report"] for line in log.read_text().splitlines())
    return {"wall": time.perf_counter() - t0, "Ray start": ray_start, "first report": first - started}


@contextmanager
def _patched(owner, name: str, on_call: Callable[[float, float, tuple, dict], None]):
    """Route every call of ``owner.name`` through a timer while the block runs: ``on_call(start, seconds,
    args, kwargs)``, ``start`` in Unix time, the clock the driver's trial ledger and the trials share."""
    real = getattr(owner, name)

    def wrapper(*a, **k):
        start, t0 = time.time(), time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            on_call(start, time.perf_counter() - t0, a, k)

    setattr(owner, name, wrapper)
    try:
        yield
    finally:
        setattr(owner, name, real)


def _timed(owner, name: str, into: dict, key: str):
    """Add the seconds of every call of ``owner.name`` to ``into[key]`` while the block runs."""
    return _patched(owner, name, lambda start, s, a, k: into.__setitem__(key, into.get(key, 0.0) + s))


REPORTED = ("epoch_s", "checkpoint_s", "test_s", "setup_s", "upload_wait_s")  # fit's and the hook's own timings


def _instrumented(log: Path) -> Callable[..., None]:
    """mfer-sweep's ``run_trial``, recording inside its actor when it was entered, when its imports were
    done, how long starting the node's uploader took, when it called ``fit``, each report hook call and
    each ``tune.report`` made in one (Ray's copy of a checkpoint folder happens inside): one JSON line per
    trial appended to ``log``. Named ``run_trial``, so trial folders are named as mfer-sweep's are. The
    trainable module's imports (torch, timm) fall inside it here; mfer-sweep's actors make them while
    unpickling the trainable, just before — the same seconds, one stage earlier."""

    def run_trial(config: dict, **kwargs) -> None:
        entered = time.time()
        from ray import tune

        import mfer.train
        from mfer_platform.sweep import trainable

        rec: dict = {"trial_id": tune.get_context().get_trial_id(), "pid": os.getpid(), "entered": entered,
                     "imported": time.time(), "hooks": [], "reports": [], "node uploader": 0.0}

        def reported(start: float, s: float, a: tuple, k: dict) -> None:
            rec["reports"].append({"s": s, "checkpoint": k.get("checkpoint") is not None, "at": start,
                                   **{m: a[0].get(m) for m in REPORTED}})

        with _patched(mfer.train, "fit", lambda start, s, a, k: rec.__setitem__("fit_at", start)), \
                _patched(tune, "report", reported), \
                _patched(trainable, "node_uploader", lambda start, s, a, k: rec.__setitem__("node uploader", s)), \
                _patched(trainable.Reporter, "__call__", lambda start, s, a, k: rec["hooks"].append([start, s])):
            try:
                trainable.run_trial(config, **kwargs)
            finally:
                with open(log, "a") as f:
                    f.write(json.dumps(rec) + "\n")

    return run_trial


DRIVER_TIMERS = (("connect", "Ray start"), ("check_resources", "resource check"), ("_prepare_data_once", "data cache"),
                 ("build_tuner", "Tuner build"), ("_fit", "_fit"), ("drain_uploaders", "final uploads (drain)"))


def platform(space, args, work: Path) -> dict:
    import ray

    from mfer_platform.results import store
    from mfer_platform.results.summary import compare_experiments
    from mfer_platform.sweep import runner, trainable

    parts: dict[str, float] = {}
    storage, log, started, tuner_at = str(work / "store"), work / "trials.jsonl", time.time(), []
    t0 = time.perf_counter()
    with ExitStack() as stack:
        for name, key in DRIVER_TIMERS:
            stack.enter_context(_timed(runner, name, parts, key))
        stack.enter_context(_timed(ray, "shutdown", parts, "Ray shutdown"))
        stack.enter_context(_patched(runner, "build_tuner", lambda start, s, a, k: tuner_at.append(start + s)))
        stack.enter_context(mock.patch.object(trainable, "run_trial", _instrumented(log)))
        experiments = runner.run_sweep(runner.SweepRequest(space, "bench", storage,
                                                           runner.ClusterSettings(num_cpus=args.slots)))
    parts["run_sweep"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    for name in experiments:
        store.ingest(storage, name)
    parts["ingest"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    res = compare_experiments(storage, experiments)
    parts["comparison"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    _report_tables(storage, experiments, res)
    parts["report (errored count, tables)"] = time.perf_counter() - t1
    trials = _trial_stages(storage, experiments, log, tuner_at[0])
    first = min(r["first report at"] for r in trials)
    return {"wall": time.perf_counter() - t0, "parts": _driver_stages(parts), "trials": trials,
            "first report": first - started}


def _report_tables(storage: str, experiments: list[str], res) -> str:
    """What mfer-sweep does after the comparison (``cli/sweep.py``): count the errored trials, build the
    comparison table with the paper's column and the cross table (returned, not printed)."""
    from mfer_platform.report.published import paper_column
    from mfer_platform.report.tables import cross_terminal, to_terminal
    from mfer_platform.sweep.runner import errored_trials

    errored = sum(len(errored_trials(storage, e)) for e in experiments)
    text = f"{errored} trial(s) errored\n" + to_terminal(res.cmp, paper_column(res.cmp, res.record))
    return text + ("\n" + cross_terminal(res.cross) if res.cross is not None else "")


def _driver_stages(t: dict[str, float]) -> dict[str, float]:
    """The driver's timers as consecutive stages that add up to the platform's wall time."""
    inner = t.get("Tuner build", 0.0) + t.get("final uploads (drain)", 0.0)
    outer = sum(t.get(k, 0.0) for k in ("Ray start", "resource check", "data cache", "_fit", "Ray shutdown"))
    stages = {k: t.get(k, 0.0) for k in ("Ray start", "resource check", "data cache", "Tuner build")}
    stages["trials (Tuner.fit)"] = t.get("_fit", 0.0) - inner
    stages.update({k: t.get(k, 0.0) for k in ("final uploads (drain)", "Ray shutdown")})
    stages["other run_sweep steps (checks, plan, records)"] = t["run_sweep"] - outer
    stages.update({k: t[k] for k in ("ingest", "comparison", "report (errored count, tables)")})
    return stages


# A trial's stages from its actor's turn to fit being called: what the issue calls worker start and imports.
WORKER_START = ("actor start, or reuse", "imports (ray.tune, mfer.train, the trainable)", "run_trial set-up")


def _trial_stages(storage: str, experiments: list[str], log: Path, tuner_at: float) -> list[dict]:
    """Each trial's consecutive stages in seconds, in the order the trials entered ``run_trial``: from its
    actor's turn — Tuner.fit's start (``tuner_at``) for the first trial on an actor, its previous trial's
    completion on a reused one — to Tune marking it complete (the driver's trial ledger), through the
    trial's own record (``_instrumented``)."""
    from mfer_platform.layout import open_storage, read_ledger

    fs, root = open_storage(storage)
    ledger = {tid: t for e in experiments for tid, t in read_ledger(fs, f"{root}/{e}").items()}
    rows, free_at = [], {}  # actor (pid) -> when its previous trial completed
    for rec in sorted((json.loads(line) for line in log.read_text().splitlines()), key=lambda r: r["entered"]):
        turn, completed, reps = free_at.get(rec["pid"], tuner_at), ledger[rec["trial_id"]]["time"], rec["reports"]
        last_hook = rec["hooks"][-1][0] + rec["hooks"][-1][1]
        stages = dict(zip(WORKER_START, (rec["entered"] - turn, rec["imported"] - rec["entered"],
                                         rec["fit_at"] - rec["imported"])))
        stages.update({"fit set-up (data, model)": reps[0]["setup_s"],
                       "epochs (train + validation)": sum(r["epoch_s"] for r in reps),
                       "checkpoint serialisation": sum(r["checkpoint_s"] for r in reps),
                       "test split": sum(r["test_s"] or 0.0 for r in reps),
                       "report hook": sum(s for _, s in rec["hooks"]),
                       "after the last report, until Tune marked it complete": completed - last_hook})
        stages["rest of fit (between stages)"] = completed - turn - sum(stages.values())
        rows.append({"stages": stages, "first on its actor": rec["pid"] not in free_at, "wall": completed - turn,
                     "node uploader start": rec["node uploader"], "first report at": reps[0]["at"],
                     "upload wait": sum(r["upload_wait_s"] for r in reps), "tune.report": sum(r["s"] for r in reps),
                     "tune.report with a checkpoint": sum(r["s"] for r in reps if r["checkpoint"])})
        free_at[rec["pid"]] = completed
    return rows


WAYS = {"Optuna alone, in-process": optuna_in_process, "hand-written Ray Tune trainable": hand_written_tune,
        "mfer-sweep (run, ingest, compare)": platform}
OPTUNA, HAND, PLATFORM = WAYS


def _median_run(runs: list[dict]) -> dict:
    """The run whose wall time is the median's (the nearer one for an even count): its parts add up."""
    med = statistics.median(r["wall"] for r in runs)
    return min(runs, key=lambda r: abs(r["wall"] - med))


def _pct(seconds: float, wall: float) -> str:
    return f"{seconds:7.1f} s {100 * seconds / wall:5.1f} %"


SUBSTAGES = {"run_trial set-up": ("node uploader start",),
             "report hook": ("upload wait", "tune.report", "tune.report with a checkpoint")}


def _print_trials(trials: list[dict], slots: int, wall: float) -> None:
    """The trials' stages summed over trials, and as a share of the wall (÷ the trials run at once)."""
    at_once = min(slots, len(trials))
    print(f"  inside the {len(trials)} trials ({sum(t['wall'] for t in trials):.1f} trial-seconds, {at_once} at a "
          f"time; each stage summed over trials, then ÷ {at_once} ≈ its wall share):")
    for stage in trials[0]["stages"]:
        total = sum(t["stages"][stage] for t in trials)
        print(f"    {stage:<52} {total:7.1f} trial-s ≈ {_pct(total / at_once, wall)}")
        for part in SUBSTAGES.get(stage, ()):
            print(f"      of which {part:<41} {sum(t[part] for t in trials):7.1f} trial-s")
    for first, label in ((True, "the first trial on its actor"), (False, "a later trial on a reused actor")):
        group = [sum(t["stages"][k] for k in WORKER_START) for t in trials if t["first on its actor"] is first]
        if group:
            print(f"  worker start and imports (actor start to fit called), {label}: "
                  f"{statistics.mean(group):.1f} s each ({len(group)} trial{'s' * (len(group) > 1)})")


def _print_breakdown(runs: dict[str, list[dict]], med: dict[str, float], slots: int) -> None:
    best, hand = _median_run(runs[PLATFORM]), _median_run(runs[HAND])
    wall = best["wall"]
    print(f"\nwhere the platform's seconds went (its median run, {wall:.1f} s), on the driver, in order:")
    for part, seconds in best["parts"].items():
        print(f"    {part:<52} {_pct(seconds, wall)}")
    _print_trials(best["trials"], slots, wall)
    print(f"vs Optuna in-process: {med[PLATFORM] - med[OPTUNA]:+.1f} s ({med[PLATFORM] / med[OPTUNA]:.2f}x its wall); "
          f"vs the hand-written Tune trainable (what the platform adds over Ray itself): "
          f"{med[PLATFORM] - med[HAND]:+.1f} s ({med[PLATFORM] / med[HAND]:.2f}x)")
    print(f"start to the first epoch reported: hand-written {hand['first report']:.1f} s (Ray start "
          f"{hand['Ray start']:.1f} s), mfer-sweep {best['first report']:.1f} s "
          f"(Ray start {best['parts']['Ray start']:.1f} s)")


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
            folder = work / f"{r}-{fn.__name__}"
            folder.mkdir(parents=True)
            runs[way].append(fn(space, args, folder))
            print(f"  repeat {r + 1}: {way}: {runs[way][-1]['wall']:.1f} s", flush=True)
    med = {w: statistics.median(x["wall"] for x in rs) for w, rs in runs.items()}
    print(f"\n{args.trials} trials x {args.epochs} epochs, {args.slots} at a time, 1 torch thread each; "
          f"median of {args.repeats} interleaved runs")
    print("| way | wall (s) | speed vs Optuna in-process |\n|---|---:|---:|")
    for way, wall in med.items():
        print(f"| {way} | {wall:.1f} | {med[OPTUNA] / wall:.2f}x |")
    _print_breakdown(runs, med, args.slots)


if __name__ == "__main__":
    main()
