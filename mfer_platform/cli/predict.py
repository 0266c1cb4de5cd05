"""``mfer-predict``: an exported model on image files or folders, one JSON line per image.

    mfer-predict model_dir=exports/quickstart inputs=faces/
    mfer-predict model_dir=exports/quickstart inputs='[a.jpg,b.png]' align=true

Predictions go to stdout; an unreadable image becomes a JSON line with an ``error`` field on
stderr and the rest carry on. Exit status 1 when any image failed, 2 when the model would not load.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from mfer.cli.usage import hydra_app, preflight

CONF = Path(__file__).parent.parent / "conf" / "predict.yaml"


def _predict(cfg) -> None:
    from omegaconf import ListConfig

    from mfer.cli.errors import user_errors
    from mfer.config import ConfigError
    from mfer.data.decode import list_images
    from mfer_platform.serving.export import ExportError, load_exported
    from mfer_platform.serving.predict import PredictOptions, predict_files

    inputs = list(cfg.inputs) if isinstance(cfg.inputs, ListConfig) else [str(cfg.inputs)]
    with user_errors(ExportError, RuntimeError):
        if not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
            raise ConfigError(f"batch_size={cfg.batch_size!r}: must be an integer >= 1, e.g. batch_size=32")
        paths = list_images(inputs)
        if not paths:  # exit 0 with no output would read as "nothing to say" about a wrong folder
            raise ConfigError(f"inputs={inputs}: no image files there (searched folders recursively)")
        exported = load_exported(cfg.model_dir, cfg.device)
        failed = 0
        for record in predict_files(exported, paths, PredictOptions(cfg.batch_size, cfg.align)):
            failed += "error" in record
            print(json.dumps(record), file=sys.stderr if "error" in record else sys.stdout, flush=True)
    sys.exit(1 if failed else 0)


def main() -> None:
    preflight("mfer-predict", __doc__, CONF)
    hydra_app(_predict, "../conf", "predict")()


if __name__ == "__main__":
    main()
