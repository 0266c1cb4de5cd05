"""``mfer-status``: the sweeps under a storage path, or one sweep's trials — while it runs, from any
machine that sees the storage.

    mfer-status storage_path=sweeps
    mfer-status storage_path=s3://bucket/mfer-sweeps name=quickstart

Reads JSON only (the sweep records, the trial ledger, each trial's result.json), never Ray's pickled
experiment state.
"""
from __future__ import annotations

from pathlib import Path

from mfer.cli.usage import hydra_app, preflight

CONF = Path(__file__).parent.parent / "conf" / "status.yaml"


def _status(cfg) -> None:
    from mfer.cli.errors import user_errors
    from mfer_platform.layout import StoreError, safe_name
    from mfer_platform.results.status import format_sweeps, format_trials, list_sweeps, sweep_status
    from mfer_platform.terminal import WIDTH

    width = None if cfg.wide else WIDTH
    with user_errors(StoreError):
        if cfg.name is None:
            text = format_sweeps(list_sweeps(str(cfg.storage_path)), width)
        else:
            text = format_trials(sweep_status(str(cfg.storage_path), safe_name(str(cfg.name))), width)
    print(text)


def main() -> None:
    preflight("mfer-status", __doc__, CONF)
    hydra_app(_status, "../conf", "status")()


if __name__ == "__main__":
    main()
