"""``mfer-export``: the sweep's best model as safetensors + config.json + metrics.json + model card.

    mfer-export storage_path=sweeps name=quickstart output_dir=exports/quickstart
"""
from __future__ import annotations

import json
from pathlib import Path

from mfer.cli.usage import hydra_app, preflight

CONF = Path(__file__).parent.parent / "conf" / "export.yaml"


def _export(cfg) -> None:
    from omegaconf import OmegaConf

    from mfer.cli.errors import user_errors
    from mfer_platform.layout import StoreError, safe_name

    with user_errors(StoreError):  # refused before the model (torch, timm) and the statistics (scipy) load
        name = safe_name(str(cfg.name))
    from mfer_platform.results.stats import StatsError
    from mfer_platform.serving.export import CARD, METRICS_FILE, ExportError, export_best

    with user_errors(StoreError, StatsError, ExportError):
        baseline = OmegaConf.to_container(cfg.baseline) if cfg.baseline is not None else None
        out = export_best(str(cfg.storage_path), name, cfg.output_dir, baseline)
    metrics = json.loads((out / METRICS_FILE).read_text())
    stat = metrics["group_stats"][metrics["selection"]["metric"]]
    print(f"exported trial {metrics['trial']['trial_id']} (seed {metrics['trial']['seed']}) of group "
          f"{metrics['group']!r}: mean {metrics['selection']['metric']} {stat['mean']:.4f} over n={stat['n']} seeds")
    print(f"-> {out} (model card: {out / CARD})")


def main() -> None:
    preflight("mfer-export", __doc__, CONF)
    hydra_app(_export, "../conf", "export")()


if __name__ == "__main__":
    main()
