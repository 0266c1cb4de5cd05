"""``mfer-report``: comparison tables and the HTML report of one sweep.

    mfer-report storage_path=sweeps name=quickstart output_dir=reports/quickstart

Ingests the sweep's experiments into the results store first (idempotent), so the store is
current for anyone querying it; where ``storage_path`` is read-only (a shared bucket this user
may only read), it says so and reports from the trial folders read in memory.
"""
from __future__ import annotations

import logging
from pathlib import Path

from mfer.cli.usage import hydra_app, preflight

log = logging.getLogger("mfer_platform")
CONF = Path(__file__).parent.parent / "conf" / "report.yaml"


def _ingest(storage_path: str, name: str) -> None:
    from mfer_platform.results.summary import ingest_sweep

    try:
        ingest_sweep(storage_path, name)
    except OSError as e:  # pyarrow raises OSError (PermissionError locally) for a read-only store
        log.warning(f"results store under {storage_path} not updated ({e}); reporting from the trial folders")


def _report(cfg) -> None:
    from omegaconf import OmegaConf

    from mfer.cli.errors import user_errors
    from mfer_platform.layout import StoreError, safe_name

    with user_errors(StoreError):  # refused before the figures (torch) and the statistics (scipy) load
        name = safe_name(str(cfg.name))
    from mfer_platform.report.figures.sweep import FigureOptions
    from mfer_platform.report.published import paper_column
    from mfer_platform.report.sweep_report import make_report
    from mfer_platform.report.tables import cross_terminal, to_terminal
    from mfer_platform.results.stats import StatsError
    from mfer_platform.results.summary import whole_sweep
    from mfer_platform.terminal import WIDTH
    from mfer_platform.serving.export import ExportError

    with user_errors(StoreError, StatsError, ExportError):
        baseline = OmegaConf.to_container(cfg.baseline) if cfg.baseline is not None else None
        figures = FigureOptions(top_k=cfg.top_k) if cfg.figures else None
        _ingest(str(cfg.storage_path), name)
        paths = make_report(str(cfg.storage_path), name, cfg.output_dir, baseline, cfg.top_k, figures)
        res = whole_sweep(str(cfg.storage_path), name, baseline)  # the store is current now: a quick read
    print(to_terminal(res.cmp, paper_column(res.cmp, res.record), width=None if cfg.wide else WIDTH))
    if res.cross is not None:
        print("\n" + cross_terminal(res.cross, width=None if cfg.wide else WIDTH))
    for kind, path in paths.items():
        print(f"{kind:>7}: {path}")


def main() -> None:
    preflight("mfer-report", __doc__, CONF)
    hydra_app(_report, "../conf", "report")()


if __name__ == "__main__":
    main()
