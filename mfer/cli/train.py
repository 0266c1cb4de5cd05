"""``mfer-train``: one training run from the Hydra config tree in ``mfer/conf``.

    mfer-train data=synthetic model=mfer_atto hydra.run.dir=runs/demo
    mfer-train experiment=paper_rafdb data.root=/data/RAF-DB/basic

Writes ``metrics.json`` and the newest checkpoint, ``checkpoints/epoch_NNNN/``, into the run directory.
"""
from __future__ import annotations

import ast
import json
import logging
import textwrap
from pathlib import Path

from mfer.cli.usage import hydra_app, preflight

log = logging.getLogger("mfer.train")
CONF = Path(__file__).parent.parent / "conf"


def _fields() -> dict[str, dict[str, str]]:
    """{class name: {field: its type's name}} of the schema's dataclasses, read from mfer/config.py's
    source: ``--help`` must answer before the schema (omegaconf, then Hydra) is imported."""
    tree = ast.parse((CONF.parent / "config.py").read_text(encoding="utf-8"))
    return {c.name: {f.target.id: ast.unparse(f.annotation) for f in c.body
                     if isinstance(f, ast.AnnAssign) and isinstance(f.target, ast.Name)}
            for c in tree.body if isinstance(c, ast.ClassDef)}


def _wrapped(lines: list[str]) -> str:
    return "\n".join(textwrap.fill(line, 100, subsequent_indent="      ") for line in lines)


def _help_extra() -> str:
    """The keys (TrainConfig's sections and their fields) and the config groups with their choices."""
    fields = _fields()
    sections = [f"  {section}.{{{', '.join(fields[kind])}}}" for section, kind in fields.get("TrainConfig", {}).items()
                if kind in fields]
    groups = [f"  {d.name}: {', '.join(sorted(f.stem for f in d.glob('*.yaml')))}"
              for d in sorted(CONF.iterdir()) if d.is_dir() and any(d.glob("*.yaml"))]
    return f"\nKeys (section.key=value):\n{_wrapped(sections)}\n\nConfig groups (group=choice):\n{_wrapped(groups)}\n"


def _log_epoch(end) -> None:
    m = end.metrics
    test = f" test_acc {m['test_acc']:.4f}" if "test_acc" in m else ""
    log.info(
        f"epoch {end.epoch}: train_loss {m['train_loss']:.4f} val_acc {m['val_acc']:.4f} "
        f"val_f1 {m['val_macro_f1']:.4f} lr {m['lr']:.2e} ({m['epoch_s']:.1f}s, "
        f"{m['train_images_per_s']:.0f} img/s){test}"
    )


def _train(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from mfer.cli.errors import user_errors
    from mfer.model.backbone import WeightsError
    from mfer.model.hub import weights_file
    from mfer.train import NonFiniteLossError, fit
    from mfer.validation import to_train_config

    run_dir = HydraConfig.get().runtime.output_dir
    with user_errors(WeightsError, NonFiniteLossError):
        train_cfg = to_train_config(OmegaConf.to_container(cfg, resolve=True))
        if train_cfg.model.pretrained:  # weights missing from the hub cache stop here, before any data is packed
            log.info(f"model.pretrained={train_cfg.model.pretrained}: {weights_file(train_cfg.model.pretrained)}")
        log.info(f"run dir: {run_dir}")
        metrics = fit(train_cfg, run_dir, on_epoch=_log_epoch)
    keys = ("val_acc", "val_mean_class_acc", "val_macro_f1", "test_acc", "selected_epoch", "params",
            "images_per_s", "wall_s")
    print(json.dumps({k: metrics.get(k) for k in keys}, indent=1))
    print(f"(1 seed: trainer.seed={train_cfg.trainer.seed}; val selects the epoch, test evaluated once) "
          f"-> {run_dir}/metrics.json")


def main() -> None:
    preflight("mfer-train", __doc__, CONF / "train.yaml", extra=_help_extra())
    # pkg://: Hydra then opens the config tree as the package mfer.conf, whose import registers the
    # TrainConfig schema train.yaml starts from (mfer/conf/__init__.py), as the compose API does.
    hydra_app(_train, "pkg://mfer.conf", "train")()


if __name__ == "__main__":
    main()
