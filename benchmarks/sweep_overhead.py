"""Sweep vs sequential: N short trials through ``mfer-sweep``'s Ray Tune path vs the same N
configurations trained one after another by ``mfer.train.fit`` in one process.

Both use the whole machine: the sweep runs ``slots`` trials at once with ``cpu_per_trial``
threads each; the sequential loop gives every run all ``slots * cpu_per_trial`` threads. Prints
the wall-time ratio and Tune's per-trial overhead in seconds:
overhead = (sweep wall x slots - sum of in-trial training walls) / N.

    python benchmarks/sweep_overhead.py [--trials 4] [--epochs 2]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from mfer.train import fit
from mfer_platform.sweep.runner import ClusterSettings, SweepRequest, run_sweep
from mfer_platform.overrides import apply_overrides, trial_values
from mfer_platform.sweep.spaces import load_space


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--slots", type=int, default=2)
    args = ap.parse_args()
    extra = [f"trainer.epochs={args.epochs}", "data.image_size=64", "data.synthetic_train=400", "data.synthetic_test=140"]
    space = load_space("quickstart", {"search.algorithm": "random", "search.num_samples": args.trials,
                                      "search.max_concurrent": args.slots, "scheduler.name": "none"}, extra)
    tmp = Path(tempfile.mkdtemp(prefix="mfer-bench-"))
    os.environ.setdefault("MFER_CACHE", str(tmp / "cache"))

    t0 = time.perf_counter()
    run_sweep(SweepRequest(space, "bench", str(tmp / "store"), ClusterSettings(num_cpus=args.slots)))
    sweep_wall = time.perf_counter() - t0

    configs, in_trial = [], 0.0
    for params in sorted((tmp / "store" / "bench").glob("*/params.json")):
        configs.append(json.loads(params.read_text()))
        rows = [json.loads(x) for x in params.with_name("result.json").read_text().splitlines() if x.strip()]
        in_trial += sum(r["epoch_s"] for r in rows)
    t0 = time.perf_counter()
    for i, config in enumerate(configs):
        cfg = apply_overrides(space.base_dict, {**trial_values(config, 0), "trainer.threads": args.slots})
        fit(cfg, tmp / f"seq{i}")
    seq_wall = time.perf_counter() - t0
    overhead = (sweep_wall * args.slots - in_trial) / len(configs)
    print(f"{len(configs)} trials x {args.epochs} epochs, {args.slots} slots")
    print(f"sweep (Ray Tune, {args.slots} concurrent, 1 thread each): {sweep_wall:7.1f} s")
    print(f"sequential fit() calls ({args.slots} threads each):        {seq_wall:7.1f} s")
    print(f"ratio sequential / sweep: {seq_wall / sweep_wall:.2f}x; Tune overhead per trial ~{overhead:.1f} s "
          f"(Ray start, worker import, checkpoint upload; in-trial epoch time {in_trial:.0f} s in all)")


if __name__ == "__main__":
    main()
