"""``mfer-report``: comparison tables and the HTML report of one sweep.

    mfer-report storage_path=sweeps name=quickstart output_dir=reports/quickstart

Ingests the experiment into the results store first (idempotent), so it also works on a sweep
that was never ingested, and refreshes one that was.
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from mfer.cli.errors import user_errors
from mfer_platform.export import ExportError
from mfer_platform.figures.sweep import FigureOptions
from mfer_platform.report import make_report
from mfer_platform.stats import StatsError
from mfer_platform.store import StoreError


@hydra.main(config_path="../conf", config_name="report", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with user_errors(StoreError, StatsError, ExportError):
        baseline = OmegaConf.to_container(cfg.baseline) if cfg.baseline is not None else None
        figures = FigureOptions(top_k=cfg.top_k) if cfg.figures else None
        paths = make_report(str(cfg.storage_path), str(cfg.name), cfg.output_dir, baseline, cfg.top_k, figures)
    print((paths["md"]).read_text())
    for kind, path in paths.items():
        print(f"{kind:>7}: {path}")


if __name__ == "__main__":
    main()
