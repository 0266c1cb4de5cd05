"""``mfer-predict``: an exported model on image files or folders, one JSON line per image.

    mfer-predict model_dir=exports/quickstart inputs=faces/
    mfer-predict model_dir=exports/quickstart inputs='[a.jpg,b.png]' align=true

Predictions go to stdout; an unreadable image becomes a JSON line with an ``error`` field on
stderr and the rest carry on. Exit status 1 when any image failed, 2 when the model would not load.
"""
from __future__ import annotations

import json
import sys

import hydra
from omegaconf import DictConfig, ListConfig

from mfer.cli.errors import user_errors
from mfer_platform.serving.export import ExportError, load_exported
from mfer.data.decode import list_images
from mfer_platform.serving.predict import PredictOptions, predict_files


@hydra.main(config_path="../conf", config_name="predict", version_base="1.3")
def main(cfg: DictConfig) -> None:
    inputs = list(cfg.inputs) if isinstance(cfg.inputs, ListConfig) else [str(cfg.inputs)]
    with user_errors(ExportError, RuntimeError):
        exported = load_exported(cfg.model_dir, cfg.device)
        failed = 0
        for record in predict_files(exported, list_images(inputs), PredictOptions(cfg.batch_size, cfg.align)):
            failed += "error" in record
            print(json.dumps(record), file=sys.stderr if "error" in record else sys.stdout, flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
