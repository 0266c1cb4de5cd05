"""``mfer-report``: comparison tables and the HTML report of one sweep.

    mfer-report storage_path=sweeps name=quickstart output_dir=reports/quickstart

Ingests the sweep's experiments into the results store first (idempotent), so the store is
current for anyone querying it; where ``storage_path`` is read-only (a shared bucket this user
may only read), it says so and reports from the trial folders read in memory.
"""
from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from mfer.cli.errors import user_errors
from mfer_platform.layout import StoreError, safe_name
from mfer_platform.report.figures.sweep import FigureOptions
from mfer_platform.report.sweep_report import make_report
from mfer_platform.results.stats import StatsError
from mfer_platform.results.summary import ingest_sweep
from mfer_platform.serving.export import ExportError

log = logging.getLogger("mfer_platform")


def _ingest(storage_path: str, name: str) -> None:
    try:
        ingest_sweep(storage_path, name)
    except OSError as e:  # pyarrow raises OSError (PermissionError locally) for a read-only store
        log.warning(f"results store under {storage_path} not updated ({e}); reporting from the trial folders")


@hydra.main(config_path="../conf", config_name="report", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with user_errors(StoreError, StatsError, ExportError):
        baseline = OmegaConf.to_container(cfg.baseline) if cfg.baseline is not None else None
        figures = FigureOptions(top_k=cfg.top_k) if cfg.figures else None
        name = safe_name(str(cfg.name))
        _ingest(str(cfg.storage_path), name)
        paths = make_report(str(cfg.storage_path), name, cfg.output_dir, baseline, cfg.top_k, figures)
    print((paths["md"]).read_text())
    for kind, path in paths.items():
        print(f"{kind:>7}: {path}")


if __name__ == "__main__":
    main()
