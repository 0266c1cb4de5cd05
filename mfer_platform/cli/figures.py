"""``mfer-figures``: the paper's figures for a sweep — t-SNE of each group's validation features,
confusion matrices per group, Grad-CAM grids of the best model (and of your own faces).

    mfer-figures storage_path=sweeps name=quickstart output_dir=figures/quickstart
    mfer-figures storage_path=sweeps name=quickstart images=faces/ seed=1 max_points=500
"""
from __future__ import annotations

from pathlib import Path

from mfer.cli.usage import hydra_app, preflight

CONF = Path(__file__).parent.parent / "conf" / "figures.yaml"


def _figures(cfg) -> None:
    from dataclasses import fields

    from omegaconf import ListConfig

    from mfer.cli.errors import user_errors
    from mfer_platform.layout import StoreError, safe_name

    with user_errors(StoreError):  # refused before the model (torch, timm) and the statistics (scipy) load
        name = safe_name(str(cfg.name))
    from mfer_platform.report.figures.sweep import FigureOptions, write_sweep_figures
    from mfer_platform.results.stats import StatsError
    from mfer_platform.serving.export import ExportError

    opts = FigureOptions(**{f.name: cfg[f.name] for f in fields(FigureOptions)})
    images = None if cfg.images is None else list(cfg.images) if isinstance(cfg.images, ListConfig) else [str(cfg.images)]
    with user_errors(StoreError, StatsError, ExportError):
        paths = write_sweep_figures(str(cfg.storage_path), name, cfg.output_dir, opts, images)
    for kind, path in paths.items():
        print(f"{kind:>7}: {path}")


def main() -> None:
    preflight("mfer-figures", __doc__, CONF)
    hydra_app(_figures, "../conf", "figures")()


if __name__ == "__main__":
    main()
