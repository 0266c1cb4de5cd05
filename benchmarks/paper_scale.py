"""Paper scale by simulation: does a ConvNeXt-B MFER trial keep its GPU busy, and how much does it store?

No GPU is needed: the real trainer and the real Ray Tune trainable (``run_trial``) train
``model=mfer_paper`` (155 M parameters, so checkpoints have their real size) at a tiny image size
for a few steps per epoch, writing to (a) a local ``storage_path`` and (b) a real S3-compatible
server on 127.0.0.1 (moto, fresh per run), every byte counted by a pyarrow filesystem wrapper
(``storage_counting.py``). Measured per epoch and per trial: seconds outside the training steps —
evaluation, checkpoint serialisation, the trainable's report hook (waiting for a background upload,
starting one, the upload inside ``tune.report``), start-up, the final test —, bytes uploaded, and the
bytes ingest reads per trial. Two checkpoint policies:

- ``every epoch``: the policy before this benchmark (``trainer.checkpoint_every=1``: a full-state
  checkpoint uploaded inside every epoch's report);
- ``default``: the trainer's defaults — a full-state checkpoint every ``trainer.checkpoint_every_s``
  of wall time, uploaded in the background, and a weights-only one at the end, handed to the node's
  uploader (``mfer_platform.sweep.uploads``), which uploads it while the node trains on; per-class validation results travel in the metrics. A 15-minute interval never
  elapses in a simulated trial of seconds, so the simulation makes epoch 2's checkpoint an interval
  one (``PAPER_SCALE_INTERVAL_AT``) to measure that path too — not epoch 1's: epoch 1's report then
  measures a report without a checkpoint on a machine not busy uploading (the S3 server runs on the
  same two cores here, so an upload in flight slows everything else; a real object store is remote).

It then projects the GPU duty cycle of a whole paper-recipe trial — training-step seconds over
trial wall seconds — on RAF-DB (100 epochs) and AffectNet-7 (60 epochs) at a given training
throughput (the saved ``trainer_throughput.py --save`` figure for ConvNeXt-B at 224 px, else
3,200 img/s), with evaluation projected as images / (3 x throughput) as ``mfer_platform.sweep.cost``
does, and serialisation and upload at the rates measured here.

    python benchmarks/paper_scale.py [--epochs 3] [--image-size 32] [--steps 2] [--throughput 3200]
                                     [--storage local,s3] [--policies "every epoch,default"]
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow.fs as pafs  # noqa: E402

from storage_counting import counted, counting_filesystem, moto_s3  # noqa: E402

# Paper recipe per dataset: (train images after the carved validation split, validation, test, epochs).
RECIPES = {"RAF-DB": (11_044, 1_227, 3_068, 100), "AffectNet-7": (278_223, 5_678, 3_500, 60)}
DEFAULT_THROUGHPUT = 3_200.0  # img/s: ConvNeXt-B MFER, bf16, one modern GPU (issue 13's working figure)
POLICIES = {"every epoch": ["trainer.checkpoint_every=1", "trainer.checkpoint_every_s=0"], "default": []}


@dataclass
class Run:
    """What one simulated trial measured."""

    storage: str
    policy: str
    epochs: list[dict] = field(default_factory=list)  # the trial's result rows
    reports: list[dict] = field(default_factory=list)  # {epoch, seconds, reason} of each report hook call
    uploaded: int = 0  # bytes written to storage_path (checkpoints, results, Ray's state)
    full_bytes: int = 0  # one full-state (resumable) checkpoint as uploaded
    final_bytes: int = 0  # the final checkpoint as uploaded (by the node's uploader, off the trial's path)
    final_upload_s: float = 0.0  # the uploader's seconds for it
    ingest_read: int = 0  # bytes ingest read for the trial
    wall_s: float = 0.0

    def figures(self) -> dict[str, float]:
        """Seconds measured per kind of checkpoint: serialising a full / the final one, the synchronous
        upload of a full / the final one, the background upload of a full one and what starting it
        costs the training thread, and a report without a checkpoint."""
        rows = {r["epoch"]: r for r in self.epochs}
        hook = {r["epoch"]: r for r in self.reports}

        def mean(values: list[float]) -> float:
            return sum(values) / len(values) if values else 0.0

        def upload(e: int) -> float:  # the hook's seconds less its wait for an earlier background upload
            return hook[e]["seconds"] - rows[e].get("upload_wait_s", 0.0)

        full = [e for e, h in hook.items() if h["reason"] not in (None, "last")]
        sync = [e for e in full if hook[e]["reason"] != "interval"]
        background = [e for e in full if hook[e]["reason"] == "interval"]
        plain = mean([upload(e) for e, h in hook.items() if h["reason"] is None])
        last = max(hook)
        return {"serialise_full": mean([rows[e]["checkpoint_s"] for e in full]),
                "serialise_final": rows[last]["checkpoint_s"], "upload_full": mean([upload(e) for e in sync]),
                "upload_final": upload(last),
                "background_upload": mean([r["background_upload_s"] for r in self.epochs if "background_upload_s" in r]),
                "background_start": max(0.0, mean([upload(e) for e in background]) - plain), "report": plain}


def timed_trial(config: dict, **kwargs) -> None:
    """``run_trial`` with each report hook call timed (waits and uploads happen inside it) into a side
    file, and the wall-clock interval falling after the epochs ``PAPER_SCALE_INTERVAL_AT`` names, as a
    15-minute one falls somewhere in a real trial."""
    from mfer.train.checkpoint import CheckpointPolicy
    from mfer_platform.sweep import trainable

    log = Path(os.environ["PAPER_SCALE_REPORTS"])
    at = {int(e) for e in os.environ.get("PAPER_SCALE_INTERVAL_AT", "").split(",") if e}
    real_call, real_reason = trainable.Reporter.__call__, CheckpointPolicy.reason

    def reason(self, epoch: int):
        return "interval" if epoch in at and epoch < self.epochs else real_reason(self, epoch)

    def call(self, end) -> None:
        t0 = time.perf_counter()
        real_call(self, end)
        with open(log, "a") as f:
            f.write(json.dumps({"epoch": end.epoch, "seconds": time.perf_counter() - t0,
                                "reason": end.checkpoint_reason}) + "\n")

    trainable.Reporter.__call__, CheckpointPolicy.reason = call, reason
    try:
        trainable.run_trial(config, **kwargs)
    finally:
        trainable.Reporter.__call__, CheckpointPolicy.reason = real_call, real_reason


def _base(args, policy: str) -> dict:
    """The paper configuration (model=mfer_paper, optim=paper) on tiny synthetic images, few steps."""
    from mfer_platform.sweep.spaces import compose_base

    return compose_base(["model=mfer_paper", "optim=paper", f"data.image_size={args.image_size}",
                         "data.synthetic_train=120", "data.synthetic_test=40", "data.batch_size=8",
                         "data.eval_batch_size=32", f"trainer.epochs={args.epochs}",
                         f"trainer.max_steps_per_epoch={args.steps}", *POLICIES[policy]])


def _tune(base: dict, fs: pafs.FileSystem, path: str, work: Path, interval_at: str) -> list[dict]:
    """Run the trial as ``mfer-sweep`` does — the final checkpoint handed to the node's uploader, which
    is drained when Tune returns —; returns the uploader's outcomes (the final upload's seconds)."""
    import ray
    from ray import tune

    from mfer_platform.sweep.uploads import drain_uploaders, uploader_key

    os.environ["PAPER_SCALE_REPORTS"] = str(work / "reports.jsonl")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PAPER_SCALE_REPORTS": str(work / "reports.jsonl"),
                                       "PAPER_SCALE_INTERVAL_AT": interval_at,
                                       "PYTHONPATH": str(Path(__file__).resolve().parent)}})
    try:
        trainable = tune.with_resources(tune.with_parameters(
            timed_trial, base=base, first_seed=0, threads=2, rows={},
            uploader=uploader_key(path, "paper_scale")), {"cpu": 2})
        tune.Tuner(trainable, param_space={},
                   tune_config=tune.TuneConfig(num_samples=1),
                   run_config=tune.RunConfig(name="paper_scale", storage_path=path, storage_filesystem=fs,
                                             checkpoint_config=tune.CheckpointConfig(num_to_keep=1), verbose=0)).fit()
        return drain_uploaders(uploader_key(path, "paper_scale"))
    finally:
        ray.shutdown()


def _ingest_read(fs: pafs.FileSystem, exp: str, counts: Path) -> int:
    """Bytes that ingest (``store.collect``) reads for the experiment: each trial folder through
    ``read_trial`` (JSON only), the trial ledger, and the content stamp's listing."""
    from mfer_platform.results.trial_files import content_stamp, read_trial, trial_states

    before = counted(counts)["read"]
    content_stamp(fs, exp)
    for info in fs.get_file_info(pafs.FileSelector(exp)):
        if info.type == pafs.FileType.Directory:
            read_trial(fs, info.path)
    trial_states(fs, exp)
    return counted(counts)["read"] - before


def measure(args, storage: str, policy: str) -> Run:
    """One simulated trial against ``storage`` ("local" or "s3") under ``policy``."""
    work = Path(tempfile.mkdtemp(prefix=f"paper-scale-{storage}-"))
    counts, run = work / "counts", Run(storage, policy)
    base = _base(args, policy)
    with moto_s3("bench") if storage == "s3" else contextlib.nullcontext(pafs.LocalFileSystem()) as inner:
        fs = counting_filesystem(inner, counts)
        path = "bench/sweeps" if storage == "s3" else str(work / "sweeps")
        t0 = time.perf_counter()
        run.final_upload_s = sum(o.get("seconds", 0.0) for o in _tune(base, fs, path, work,
                                                                       "2" if policy == "default" else ""))
        run.wall_s = time.perf_counter() - t0
        gc.collect()  # streams Ray dropped without closing record their bytes
        run.uploaded = counted(counts)["write"]
        # Ray's checkpoint folders are checkpoint_00000N, one per report that carried one (a pointer too).
        ray_ckpts = [b for b in (counted(counts, f"/checkpoint_{i:06d}/")["write"] for i in range(args.epochs)) if b]
        run.final_bytes = counted(counts, f"/uploads/epoch_{args.epochs:04d}/")["write"]  # the uploader's
        run.full_bytes = counted(counts, "/uploads/epoch_0002/")["write"] if policy == "default" else ray_ckpts[0]
        exp = f"{path}/paper_scale"
        run.ingest_read = _ingest_read(fs, exp, counts)
        trial = next(i.path for i in fs.get_file_info(pafs.FileSelector(exp)) if i.type == pafs.FileType.Directory)
        with fs.open_input_stream(f"{trial}/result.json") as f:
            run.epochs = [json.loads(x) for x in f.read().decode().splitlines() if x.strip()]
    run.reports = [json.loads(x) for x in (work / "reports.jsonl").read_text().splitlines()]
    if not os.environ.get("PAPER_SCALE_KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    return run


@dataclass
class Projection:
    dataset: str
    policy: str
    storage: str
    duty: float
    overhead_s: dict[str, float]
    checkpoints: int
    uploaded_gb: float
    final_upload_s: float  # the final checkpoint's upload by the node's uploader: off the trial's path


def project(run: Run, dataset: str, throughput: float, interval_s: float,
            upload_mb_s: Optional[float] = None) -> Projection:
    """A whole paper-recipe trial on ``dataset`` at ``throughput`` img/s, with this run's measured
    serialisation, upload and per-epoch report costs and the policy's checkpoints: ``every epoch``, a
    full one uploaded inside every report (as before); ``default``, one full one per interval of
    trial wall time uploaded in the background — the training thread pays its serialisation, the
    start, and a wait at the end only if the last one is still in flight — and the weights-only final
    one handed to the node's uploader: the training thread pays the hand-off, the upload itself
    (``final_upload_s``) overlaps the node's next trial. ``upload_mb_s``: uploads at that bandwidth instead."""
    n_train, n_val, n_test, epochs = RECIPES[dataset]
    f = run.figures()
    if upload_mb_s:
        rate = upload_mb_s * 1e6
        f.update(upload_full=run.full_bytes / rate, background_upload=run.full_bytes / rate)
    train_s, eval_s = n_train / throughput, n_val / (3 * throughput)
    epoch_wall = train_s + eval_s + f["report"]
    overhead = {"evaluation": epochs * eval_s + n_test / (3 * throughput), "report": epochs * f["report"],
                "start-up": run.epochs[0].get("setup_s", 0.0)}
    if run.policy == "every epoch":
        n_full, final = epochs, 0
        overhead.update(serialise=epochs * f["serialise_full"], upload=epochs * f["upload_full"])
    else:
        n_full, final = int(epochs * epoch_wall // interval_s), 1
        gap = epochs * epoch_wall - n_full * interval_s  # from the last interval checkpoint to the end
        overhead.update(serialise=n_full * f["serialise_full"] + f["serialise_final"],
                        upload=n_full * f["background_start"] + f["upload_final"],
                        wait=max(0.0, f["background_upload"] - gap) if n_full else 0.0)
    total_train = epochs * train_s
    final_upload_s = run.final_bytes / (upload_mb_s * 1e6) if upload_mb_s else run.final_upload_s
    return Projection(dataset, run.policy, run.storage, total_train / (total_train + sum(overhead.values())),
                      overhead, n_full + final, (n_full * run.full_bytes + final * run.final_bytes) / 1e9,
                      final_upload_s if final else 0.0)


def _throughput(arg: float | None) -> tuple[float, str]:
    if arg:
        return arg, "given"
    from mfer_platform.sweep.cost import PAPER_BACKBONE, PAPER_SIZE, measured

    saved = measured(PAPER_BACKBONE, PAPER_SIZE)
    return (saved.images_per_s, saved.source) if saved else (DEFAULT_THROUGHPUT, "default: no saved GPU measurement")


def _print_run(run: Run) -> None:
    f, rows = run.figures(), run.epochs
    print(f"\n[{run.storage}, checkpoint {run.policy}] {len(rows)} epochs, wall {run.wall_s:.0f} s")
    print("  epoch  train_s  eval_s  serialise_s  report hook_s (of it waiting)  background upload_s  checkpoint")
    for r, rep in zip(rows, run.reports):
        print(f"  {r['epoch']:>5}  {r.get('train_s', 0):7.2f}  {r.get('eval_s', 0):6.2f}  {r.get('checkpoint_s', 0):11.2f}"
              f"  {rep['seconds']:13.2f} ({r.get('upload_wait_s', 0):5.2f})  {r.get('background_upload_s', 0):18.2f}"
              f"  {rep['reason'] or '-'}")
    print(f"  start-up {rows[0].get('setup_s', 0):.1f} s, final test {rows[-1].get('test_s', 0):.2f} s; full checkpoint "
          f"{run.full_bytes / 1e9:.2f} GB (serialise {f['serialise_full']:.1f} s), final {run.final_bytes / 1e9:.2f} GB "
          f"(serialise {f['serialise_final']:.1f} s, hand-off to the node's uploader {f['upload_final']:.2f} s, "
          f"its upload off the trial's path {run.final_upload_s:.1f} s)")
    if run.policy == "every epoch":
        print(f"  full checkpoint uploaded inside its report: {f['upload_full']:.1f} s")
    else:
        print(f"  full checkpoint uploaded in the background: {f['background_upload']:.1f} s "
              f"({f['background_start']:.2f} s on the training thread to start it)")
    print(f"  bytes uploaded {run.uploaded / 1e9:.2f} GB in all ({run.uploaded / 1e9 / len(rows):.2f} GB/epoch); "
          f"ingest read {run.ingest_read / 1e3:.1f} kB for the trial")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--old-epochs", type=int, default=2, help="epochs of the every-epoch runs (extrapolated)")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2, help="training steps per epoch")
    ap.add_argument("--throughput", type=float, default=None, help="training img/s of ConvNeXt-B MFER on the GPU")
    ap.add_argument("--interval", type=float, default=None, help="trainer.checkpoint_every_s to project (default: the trainer's)")
    ap.add_argument("--storage", default="local,s3")
    ap.add_argument("--policies", default=",".join(POLICIES), help="which of the policies to measure")
    ap.add_argument("--s3-mb-s", type=float, default=300.0,
                    help="an object store's upload bandwidth to project beside moto's measured one (an assumption)")
    args = ap.parse_args()
    from mfer.config import TrainerConfig

    interval = args.interval or TrainerConfig().checkpoint_every_s
    throughput, source = _throughput(args.throughput)
    runs = []
    for storage in args.storage.split(","):
        for policy in args.policies.split(","):
            epochs = args.old_epochs if policy == "every epoch" else args.epochs
            runs.append(measure(argparse.Namespace(**{**vars(args), "epochs": epochs}), storage, policy))
            _print_run(runs[-1])
    print(f"\nProjected paper-recipe trial at {throughput:,.0f} img/s ({source}); checkpoint interval {interval:.0f} s")
    print("| dataset | storage | checkpoint policy | checkpoints | uploaded | GPU duty | overhead (s) "
          "| final upload, overlapping the next trial (s) |")
    print("|---|---|---|---:|---:|---:|---|---:|")
    for run in runs:
        rates = [None, args.s3_mb_s] if run.storage == "s3" else [None]
        for dataset in RECIPES:
            for rate in rates:
                p = project(run, dataset, throughput, interval, rate)
                parts = ", ".join(f"{k} {v:.0f}" for k, v in p.overhead_s.items())
                where = p.storage + (f" at {rate:.0f} MB/s (assumed)" if rate else " (measured)" if run.storage == "s3" else "")
                print(f"| {dataset} | {where} | {p.policy} | {p.checkpoints} | {p.uploaded_gb:.1f} GB | "
                      f"{100 * p.duty:.1f} % | {parts} | {p.final_upload_s:.0f} |")


if __name__ == "__main__":
    main()
