"""``mfer-sweep``: run a search space on Ray Tune (a local instance by default).

    mfer-sweep search_space=quickstart name=demo storage_path=sweeps
    mfer-sweep search_space=paper/component_ablation dry_run=true
    mfer-sweep search_space=paper/component_ablation scale=smoke      # the same study, CPU-sized
    mfer-sweep search_space=loss_weights cluster.address=auto storage_path=s3://bucket/sweeps
"""
from __future__ import annotations

import logging
import shlex
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from mfer.cli.errors import user_errors
from mfer_platform.layout import StoreError, normalize_storage, safe_name
from mfer_platform.report.published import paper_column
from mfer_platform.report.tables import to_markdown
from mfer_platform.results import store
from mfer_platform.results.stats import StatsError
from mfer_platform.results.summary import compare_experiments
from mfer_platform.sweep.runner import ClusterSettings, SweepInterrupted, SweepRequest, describe, run_sweep
from mfer_platform.sweep.spaces import SearchSpace, SpaceError, load_space


def _section_overrides(cfg: DictConfig) -> dict:
    """search/scheduler/resources fields set (non-null) in ``cfg``: the CLI's or a scale preset's."""
    out = {}
    for section in ("search", "scheduler", "resources"):
        for key, value in (cfg.get(section) or {}).items():
            if value is not None:
                out[f"{section}.{key}"] = value
    return out


def requested_space(cfg: DictConfig) -> SearchSpace:
    """The search space the composed command asks for, with the scale preset and the command line's
    settings applied — the scale preset first, so the command line's own settings win over it."""
    return load_space(str(cfg.search_space), {**_section_overrides(cfg.scale), **_section_overrides(cfg)},
                      extra_base=[*cfg.scale.overrides, *cfg.overrides])


@hydra.main(config_path="../conf", config_name="sweep", version_base="1.3")
def main(cfg: DictConfig) -> None:
    logging.getLogger("mfer_platform").setLevel(logging.INFO)
    with user_errors(SpaceError, StoreError, StatsError):
        space = requested_space(cfg)
        # str(): Hydra types bare values, so name=nan or name=1 would arrive as a float or an int.
        name = safe_name(str(cfg.name) if cfg.name is not None else str(cfg.search_space).replace("/", "-"))
        storage = normalize_storage(str(cfg.storage_path))
        print(describe(space, name, storage), flush=True)
        if cfg.dry_run:
            print("dry run: nothing launched")
            return
        cluster = ClusterSettings(**OmegaConf.to_container(cfg.cluster))
        try:
            experiments = run_sweep(SweepRequest(space, name, storage, cluster, cfg.max_failures))
        except SweepInterrupted as e:  # exit 0 and "sweep finished" would hide that trials are left
            print(f"{e}\nresume with: mfer-sweep {' '.join(shlex.quote(a) for a in sys.argv[1:])}", file=sys.stderr)
            sys.exit(130)
        for experiment in experiments:
            store.ingest(storage, experiment)
        res = compare_experiments(storage, experiments)
    statuses = ", ".join(f"{n} {s}" for s, n in res.trials["status"].value_counts().items())
    print(f"\n{len(res.trials)} trials ({statuses}); results store: {storage}/results/trials.parquet\n")
    print(to_markdown(res.cmp, paper_column(res.cmp, res.record)))
    print(f"\nreport: mfer-report storage_path={storage} name={name} output_dir=reports/{name}")


if __name__ == "__main__":
    main()
