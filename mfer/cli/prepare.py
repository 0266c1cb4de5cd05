"""``mfer-prepare``: MTCNN-align every image under input_dir into the same tree under output_dir.

    mfer-prepare input_dir=/data/RAF-DB/basic output_dir=/data/RAF-DB-mtcnn
    mfer-prepare input_dir=in output_dir=out image_size=112 margin=0.3 batch_size=64 device=cuda

Re-running resumes (finished images are skipped). Writes ``output_dir/prepare_report.json``;
the output folder then serves as ``data.root`` (label files are copied alongside).
"""
from __future__ import annotations

from pathlib import Path

from mfer.cli.usage import hydra_app, preflight

CONF = Path(__file__).parent.parent / "conf" / "prepare.yaml"


def _prepare(cfg) -> None:
    from omegaconf import OmegaConf

    from mfer.cli.errors import user_errors
    from mfer.data.prepare import REPORT, prepare_tree, to_prepare_config

    with user_errors():
        report = prepare_tree(to_prepare_config(OmegaConf.to_container(cfg, resolve=True)))
    c = report["counts"]
    print(f"{c['images']} images: {c['aligned']} aligned, {c['no_face']} without a face (centre crop), "
          f"{c['unreadable']} unreadable; {c['done_before']} done by an earlier run, "
          f"{c['other_files_copied']} other files copied")
    for item in report["not_aligned"][:20]:
        print(f"  {item['status']}: {item['path']}  {item['reason']}")
    print(f"report: {report['output_dir']}/{REPORT}")


def main() -> None:
    preflight("mfer-prepare", __doc__, CONF)
    from hydra.core.config_store import ConfigStore

    from mfer.data.prepare import PrepareConfig

    ConfigStore.instance().store(name="prepare_schema", node=PrepareConfig)  # prepare.yaml starts from it
    hydra_app(_prepare, "../conf", "prepare")()


if __name__ == "__main__":
    main()
