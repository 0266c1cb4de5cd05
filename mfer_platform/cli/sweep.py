"""``mfer-sweep``: run a search space on Ray Tune (a local instance by default).

    mfer-sweep search_space=quickstart name=demo storage_path=sweeps
    mfer-sweep search_space=paper/component_ablation dry_run=true
    mfer-sweep search_space=loss_weights cluster.address=auto storage_path=s3://bucket/sweeps
"""
from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from mfer.cli.errors import user_errors
from mfer_platform.runner import ClusterSettings, SweepRequest, describe, normalize_storage, run_sweep
from mfer_platform.spaces import SpaceError, load_space


def _section_overrides(cfg: DictConfig) -> dict:
    out = {}
    for section in ("search", "scheduler", "resources"):
        for key, value in (cfg.get(section) or {}).items():
            if value is not None:
                out[f"{section}.{key}"] = value
    return out


@hydra.main(config_path="../conf", config_name="sweep", version_base="1.3")
def main(cfg: DictConfig) -> None:
    logging.getLogger("mfer_platform").setLevel(logging.INFO)
    with user_errors(SpaceError):
        space = load_space(cfg.search_space, _section_overrides(cfg), extra_base=list(cfg.overrides))
        name = cfg.name or cfg.search_space.replace("/", "-")
        storage = normalize_storage(cfg.storage_path)
        print(describe(space, name, storage), flush=True)
        if cfg.dry_run:
            print("dry run: nothing launched")
            return
        cluster = ClusterSettings(**OmegaConf.to_container(cfg.cluster))
        run_sweep(SweepRequest(space, name, storage, cluster, cfg.max_failures))


if __name__ == "__main__":
    main()
