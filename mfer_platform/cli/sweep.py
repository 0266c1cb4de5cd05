"""``mfer-sweep``: run a search space on Ray Tune (a local instance by default).

    mfer-sweep search_space=quickstart name=demo storage_path=sweeps
    mfer-sweep search_space=paper/component_ablation dry_run=true
    mfer-sweep search_space=paper/component_ablation scale=smoke      # the same study, CPU-sized
    mfer-sweep search_space=loss_weights cluster.address=auto storage_path=s3://bucket/sweeps
"""
from __future__ import annotations

import logging
import shlex
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from mfer.cli.usage import hydra_app, preflight

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from mfer_platform.sweep.runner import SweepRequest
    from mfer_platform.sweep.spaces import SearchSpace

CONF = Path(__file__).parent.parent / "conf" / "sweep.yaml"
SPACES = Path(__file__).parents[2] / "search_spaces"  # the package beside mfer_platform


def _help_extra() -> str:
    """The search spaces and scale presets to choose from, by their files (``--help`` imports nothing)."""
    spaces = sorted(str(p.relative_to(SPACES).with_suffix("")) for p in SPACES.rglob("*.yaml"))
    scales = sorted(p.stem for p in (CONF.parent / "scale").glob("*.yaml"))
    return textwrap.fill(f"search_space= one of: {', '.join(spaces)} (or a path to a YAML file); "
                         f"scale= one of: {', '.join(scales)}.", 100, initial_indent="\n") + "\n"


def _section_overrides(cfg: DictConfig) -> dict:
    """search/scheduler/resources fields set (non-null) in ``cfg``: the CLI's or a scale preset's."""
    out = {}
    for section in ("search", "scheduler", "resources"):
        for key, value in (cfg.get(section) or {}).items():
            if value is not None:
                out[f"{section}.{key}"] = value
    return out


def requested_space(cfg: DictConfig) -> SearchSpace:
    """The search space the composed command asks for, with the scale preset and the command line's
    settings applied — the scale preset first, so the command line's own settings win over it."""
    from omegaconf import OmegaConf

    from mfer_platform.sweep.spaces import load_space

    return load_space(str(cfg.search_space), {**_section_overrides(cfg.scale), **_section_overrides(cfg)},
                      extra_base=[*cfg.scale.overrides, *cfg.overrides],
                      swaps=OmegaConf.to_container(cfg.scale).get("swaps"))


def _command(setting: str = "") -> str:
    """This command line as typed, with ``setting`` (``key=value``) added or replacing that key's."""
    key = setting.partition("=")[0]
    args = [a for a in sys.argv[1:] if not key or a.partition("=")[0] != key] + ([setting] if setting else [])
    return "mfer-sweep " + " ".join(shlex.quote(a) for a in args)


def _say_errored(storage: str, experiments: list[str]) -> None:
    """Trials that exhausted their retries stay errored on a plain re-run: say how many, and the command
    that re-runs them from their checkpoints."""
    from mfer_platform.sweep.runner import errored_trials

    errored = sum(len(errored_trials(storage, e)) for e in experiments)
    if errored:
        print(f"{errored} trial(s) errored (each one's reason: mfer-status, or the results store's error column); "
              f"once the cause is fixed, re-run them from their checkpoints with: {_command('retry_errored=true')}",
              flush=True)


def _request(cfg: DictConfig) -> SweepRequest:
    """The command's request, every argument checked: name, storage and trackers, then the space's
    structure, all before torch and timm are imported (only the space's values need them), so such a
    refusal takes about a second instead of 10-20 s. Neither the statistics (scipy) nor Ray load here."""
    from omegaconf import OmegaConf

    from mfer_platform.layout import normalize_storage, safe_name
    from mfer_platform.sweep.runner import ClusterSettings, SweepRequest
    from mfer_platform.sweep.tracking import TrackingSettings, check

    # str(): Hydra types bare values, so name=nan or name=1 would arrive as a float or an int.
    name = safe_name(str(cfg.name) if cfg.name is not None else str(cfg.search_space).replace("/", "-"))
    storage = normalize_storage(str(cfg.storage_path))
    trackers = OmegaConf.to_container(cfg.tracking) if OmegaConf.is_list(cfg.tracking) else [cfg.tracking]
    tracking = TrackingSettings([str(t) for t in trackers], cfg.tracking_uri)
    check(tracking, storage)  # an unknown or missing tracker fails here, before anything runs
    return SweepRequest(requested_space(cfg), name, storage, ClusterSettings(**OmegaConf.to_container(cfg.cluster)),
                        cfg.max_failures, retry_errored=bool(cfg.retry_errored), wide=cfg.wide, tracking=tracking)


def _sweep(cfg: DictConfig) -> None:
    from mfer.cli.errors import user_errors
    from mfer_platform.layout import StoreError
    from mfer_platform.sweep.runner import SweepInterrupted, check_same_space, describe, run_sweep
    from mfer_platform.sweep.spaces import SpaceError
    from mfer_platform.terminal import WIDTH, wrap_lines

    logging.getLogger("mfer_platform").setLevel(logging.INFO)
    with user_errors(SpaceError, StoreError):
        req = _request(cfg)
        name, storage = req.name, req.storage_path
        print(wrap_lines(describe(req.space, name, storage), None if cfg.wide else WIDTH), flush=True)
        if cfg.dry_run:
            check_same_space(req)  # a changed space under a stored name is refused here too
            print("dry run: nothing launched")
            return
    # the results' side (pandas, scipy) only once there are results
    from mfer_platform.report.published import paper_column
    from mfer_platform.report.tables import cross_terminal, to_terminal
    from mfer_platform.results import store
    from mfer_platform.results.stats import StatsError
    from mfer_platform.results.summary import compare_experiments

    with user_errors(SpaceError, StoreError, StatsError):
        try:
            experiments = run_sweep(req)
        except SweepInterrupted as e:  # exit 0 and "sweep finished" would hide that trials are left
            print(f"{e}\nresume with: {_command()}", file=sys.stderr)
            sys.exit(130)
        for experiment in experiments:
            store.ingest(storage, experiment)
        _say_errored(storage, experiments)  # before the comparison, which fails when every trial errored
        res = compare_experiments(storage, experiments)
    statuses = ", ".join(f"{n} {s}" for s, n in res.trials["status"].value_counts().items())
    print(f"\n{len(res.trials)} trials ({statuses}); results store:\n  {storage}/results/trials.parquet\n")
    print(to_terminal(res.cmp, paper_column(res.cmp, res.record), width=None if cfg.wide else WIDTH))
    if res.cross is not None:
        print("\n" + cross_terminal(res.cross, width=None if cfg.wide else WIDTH))
    print(f"\nreport: mfer-report storage_path={storage} name={name} output_dir=reports/{name}")


def main() -> None:
    preflight("mfer-sweep", __doc__, CONF, extra=_help_extra())
    hydra_app(_sweep, "../conf", "sweep")()


if __name__ == "__main__":
    main()
