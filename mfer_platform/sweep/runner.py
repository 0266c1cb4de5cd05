"""Run a sweep: connect to Ray, check resources, launch or resume the Tuner, ingest results.

The embedded default starts a local Ray instance for the run; ``cluster.address=auto`` or
``host:port`` joins an existing cluster instead. Re-running the same command with the same
experiment name resumes an interrupted sweep (``Tuner.restore`` with unfinished and errored
trials retried from their checkpoints), so no trial is lost or duplicated.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

from mfer.config import to_dict
from mfer_platform.layout import (SWEEP_FILE, StoreError, check_writable, experiment_chain, experiment_path, ledger_events,
                                  open_storage, read_ledger, read_sweep_record, write_json)
from mfer_platform.sweep import capacity, identity, plan, tracking
from mfer_platform.sweep.spaces import SearchSpace, SpaceError
from mfer_platform.sweep.tracking import TrackingSettings
from mfer_platform.sweep.uploads import drain_uploaders, uploader_key

log = logging.getLogger("mfer_platform")


class SweepInterrupted(RuntimeError):
    """Tune's run returned with trials unfinished (SIGINT): the experiment is saved, to be resumed."""


@dataclass
class ClusterSettings:
    address: Optional[str] = None  # None: start a local Ray instance; "auto" or "host:port": join
    num_cpus: Optional[int] = None  # for the local instance only
    num_gpus: Optional[int] = None
    # true: nodes that fit a trial will come (an autoscaler this process cannot see, e.g. KubeRay's):
    # don't refuse a sweep that no alive node can host yet
    autoscaling: bool = False


@dataclass
class SweepRequest:
    space: SearchSpace
    name: str
    storage_path: str
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    max_failures: int = 2  # retries of a crashed trial, each from its latest checkpoint
    # Re-run, from their checkpoints, the trials of finished experiments that exhausted their retries
    # (a storage outage, a lost node): without it they stay errored, as Tune left them.
    retry_errored: bool = False
    wide: bool = False  # progress lines at full length instead of cut to terminal.WIDTH columns
    tracking: TrackingSettings = field(default_factory=TrackingSettings)  # TensorBoard, MLflow, W&B (off by default)


def describe(space: SearchSpace, name: str, storage_path: str) -> str:
    """The compiled plan a dry run prints (and a real run logs first)."""
    from mfer_platform.sweep import cost  # builds the model (torch, timm): a refused request never needs it

    upper, expected = plan.estimated_trial_epochs(space)
    s, r = space.search, space.resources
    lines = [
        f"sweep {name!r} from {space.source}",
        f"  {space.description}".rstrip(),
        f"  base overrides : {' '.join(space.base) or '(defaults)'}",
        f"  model/data     : {space.base_config.model.backbone}, {space.base_config.data.name} "
        f"@ {space.base_config.data.image_size}px, {space.epochs()} epochs per trial",
        f"  search         : {s.algorithm}, {space.trial_count()} trials "
        f"({s.seeds} seed{'s' if s.seeds > 1 else ''} each), metric {s.metric} ({s.mode}), "
        f"max {s.max_concurrent} concurrent" + (f", time budget {s.time_budget_s}s" if s.time_budget_s else ""),
        f"  scheduler      : {space.scheduler.name}",
        f"  resources      : {r.cpu:g} CPU + {r.gpu:g} GPU per trial",
        f"  trial-epochs   : {upper} at most, ~{expected} expected with early stopping",
        *cost.estimate(space).lines(),
        f"  storage        : {experiment_path(storage_path, name)}",
        "  parameters     :",
    ]
    varied = [f"    {p.key:<28} {p.kind:<10} {p.values}" for p in space.params]
    varied += [f"    row {row:<24} {overrides or '(the base)'}" for row, overrides in space.rows.items()]
    return "\n".join(lines + (varied or ["    (none)"]))


def quiet_ray() -> None:
    """Our LiveTable replaces Ray's console output; keep Ray's warnings that matter."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # legacy reporter, silenced by verbose=0
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray 2.60 says at every local start that token authentication is on by default (it stays on, as the
    # README says): a 200-column line that tells a sweep's user nothing new.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def connect(cluster: ClusterSettings) -> None:
    quiet_ray()
    import ray

    if ray.is_initialized():
        return
    if cluster.address:
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.WARNING)
    else:  # loopback only; what killed drivers left is stopped first (see local_ray)
        from mfer_platform.sweep import local_ray

        local_ray.start(cluster.num_cpus, cluster.num_gpus)


def check_resources(space: SearchSpace, autoscaling: bool = False) -> int:
    """Fail before any trial starts if no node — alive, or one the autoscaler may launch — can
    ever host one trial; return how many trials to run at once (see ``capacity``)."""
    alive, scalable = capacity.alive_nodes(), capacity.autoscaler_node_types()
    need_cpu, need_gpu = space.resources.cpu, space.resources.gpu
    slots = capacity.trial_slots(alive + scalable, need_cpu, need_gpu) or (math.inf if autoscaling else 0)
    if not slots:
        biggest = max((s.resources for s in alive + scalable), key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)),
                      default={})
        raise SpaceError(
            f"{space.source}: resources: a trial needs {need_cpu:g} CPU + {need_gpu:g} GPU, but the largest node "
            f"this cluster has or can launch has {biggest.get('CPU', 0):g} CPU + {biggest.get('GPU', 0):g} GPU; "
            f"lower resources.cpu/resources.gpu, join a cluster with GPUs (cluster.address=…), or, if its "
            f"autoscaler will add such nodes, say so with cluster.autoscaling=true"
        )
    if not capacity.trial_slots(alive, need_cpu, need_gpu):
        types = ", ".join(s.name for s in scalable if capacity.per_node(s.resources, need_cpu, need_gpu))
        log.warning(f"no node can host a trial yet; trials wait for the autoscaler to launch {types or 'nodes'}")
    return int(max(1, min(slots, space.search.max_concurrent)))


def sweep_record(req: SweepRequest, extends: Optional[str]) -> dict:
    """What ``mfer_sweep.json`` holds: the space as run (readers build tables from it; a re-run under
    the same name is compared with it, ``identity``)."""
    s = req.space
    return {
        "name": req.name, "search_space": s.name, "source": s.source, "description": s.description,
        "factors": s.factors, "params": {p.key: {p.kind: p.values} for p in s.params},  # kinds: the report's log axes
        "seed_key": "trainer.seed", "seeds": plan.seeds(s),
        "metric": s.search.metric, "mode": s.search.mode, "objectives": s.search.objectives,
        "base": s.base, "base_config": to_dict(s.base_config), "baseline": s.baseline,
        "searcher": asdict(s.search), "scheduler": asdict(s.scheduler), "resources": asdict(s.resources),
        "extends": extends, "trial_count": s.trial_count(), "rows": s.rows, "dataset": s.dataset,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _write_sweep_record(req: SweepRequest, name: str, extends: Optional[str]) -> None:
    write_json(req.storage_path, f"{name}/{SWEEP_FILE}", sweep_record(req, extends))


def check_same_space(req: SweepRequest) -> None:
    """Refuse, before anything runs, a re-run under an existing name whose space differs in what its
    trials compute (``identity``): resumed or extended, its trials would share one table with the
    stored ones. Compared with the newest record of the chain (each extension's was compared in turn)."""
    chain = experiment_chain(req.storage_path, req.name)
    if not chain:
        return
    try:
        stored = read_sweep_record(req.storage_path, chain[-1])
    except ValueError as e:  # not JSON: a record nobody wrote with mfer-sweep
        raise SpaceError(f"{experiment_path(req.storage_path, chain[-1])}/{SWEEP_FILE} is unreadable ({e}); "
                         f"pick a new name= or remove that experiment folder") from None
    diffs, unchecked = identity.compare(stored, sweep_record(req, extends=None))
    if diffs:
        raise SpaceError(identity.refusal(req.name, experiment_path(req.storage_path, chain[-1]), diffs))
    if unchecked:
        log.warning(f"{req.name}: not compared with the stored sweep record (written by another version): "
                    f"{', '.join(unchecked)}")


def _prepare_data_once(space: SearchSpace) -> None:
    """Build the packed data cache on this node before trials start, so they only memory-map it.
    Trials on other nodes build their node's copy once, under the cache's file lock."""
    from mfer.data.registry import load_dataset

    load_dataset(space.base_config.data)


def _chain(storage_path: str, name: str) -> list[str]:
    """The sweep's experiments that Ray can restore, oldest first (``layout.experiment_chain``'s rule,
    cut after the last one whose Tuner state exists: an extension killed before its Tuner started is
    launched again, not resumed)."""
    chain = experiment_chain(storage_path, name) or [name]
    while len(chain) > 1 and not _exists(storage_path, chain[-1]):
        chain.pop()
    return chain


def finished_trials(storage_path: str, name: str) -> list[tuple[dict, dict]]:
    """(config, last result's scalars) of the experiment's trials from the trial ledger, or [] while
    any is unfinished (or no ledger exists: resuming a finished experiment is harmless). The ledger is
    JSON; Ray's experiment state, which ExperimentAnalysis would unpickle, is never read here."""
    fs, root = open_storage(storage_path)
    events = ledger_events(fs, f"{root}/{name}")
    # Tune's run returned with every trial finished, and nothing came after
    ended = bool(events) and events[-1].get("event") == "end" and not events[-1].get("unfinished")
    trials = read_ledger(fs, f"{root}/{name}").values()
    if not ended or any(t["status"] not in ("TERMINATED", "ERROR") for t in trials):
        return []
    return [(t.get("config") or {}, t.get("result") or {}) for t in trials]


def _interrupted(storage_path: str, name: str) -> bool:
    """Tune's run returned with trials unfinished, by the ledger (an experiment from before the ledger,
    resumed, has none: it cannot tell, and counts as finished)."""
    fs, root = open_storage(storage_path)
    return bool(ledger_events(fs, f"{root}/{name}")) and not finished_trials(storage_path, name)


def errored_trials(storage_path: str, name: str) -> list[str]:
    """Ids of the experiment's trials that ended in ERROR (retries exhausted), by the trial ledger."""
    fs, root = open_storage(storage_path)
    return [tid for tid, t in read_ledger(fs, f"{root}/{name}").items() if t["status"] == "ERROR"]


def _warm_start(req: SweepRequest, history: list[tuple[dict, dict]]) -> list[tuple[dict, Any]]:
    """(config, reward) pairs to seed an extension's Optuna study with. None when the sweep has its
    study (``sweep.study``): the extension continues it, early-stopped trials in it as PRUNED. A sweep
    from before studies were kept gets the trials that ran every epoch: an early-stopped trial's last
    value is not a finished run's, and TPE would learn it as one; an errored trial has none."""
    space = req.space
    if not space.search.algorithm.startswith("optuna"):
        return []
    from mfer_platform.sweep.study import study_exists

    if study_exists(space, req.storage_path, req.name):
        return []
    keys, metrics = space.factors, [space.search.metric, *space.search.objectives]
    out = []
    for config, result in history:
        ran_all = result.get("epoch", 0) >= space.epochs()
        if ran_all and all(m in result for m in metrics) and all(k in config for k in keys):
            reward = [result[m] for m in metrics] if len(metrics) > 1 else result[metrics[0]]
            out.append(({k: config[k] for k in keys}, reward))
    log.warning(f"{req.name} has no Optuna study (run by an older version): the extension's new study starts "
                f"from its {len(out)} trials that ran every epoch")
    return out


def build_tuner(req: SweepRequest, name: str, slots: int, num_samples: int, warm: list[tuple[dict, Any]]):
    from ray import tune

    from mfer_platform.sweep.ledger import TrialLedger
    from mfer_platform.sweep.progress import LiveTable
    from mfer_platform.sweep.study import TrialCheckpoints
    from mfer_platform.terminal import WIDTH
    from mfer_platform.sweep.trainable import run_trial

    s = req.space
    path = experiment_path(req.storage_path, name)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, base=s.base_dict, first_seed=s.search.first_seed,
                             threads=max(1, int(s.resources.cpu)), rows=s.rows,
                             checkpoint_epochs=plan.checkpoint_epochs(s),
                             uploader=uploader_key(req.storage_path, name)),
        {"cpu": s.resources.cpu, "gpu": s.resources.gpu},
    )
    if tune.Tuner.can_restore(path):
        log.warning(f"resuming experiment {path}: unfinished and errored trials continue from their checkpoints")
        return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                  param_space=plan.param_space(s))
    live = LiveTable(s.search.metric, s.search.mode, s.epochs(), plan.trials_launched(s, num_samples), slots,
                     width=None if req.wide else WIDTH)
    run_config = tune.RunConfig(
        name=name,
        storage_path=req.storage_path,
        failure_config=tune.FailureConfig(max_failures=req.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[live, TrialLedger(req.storage_path, name), TrialCheckpoints(req.storage_path),
                   *tracking.callbacks(req.tracking, req.storage_path, req.name)],
        verbose=0,
    )
    metric, mode = plan.tune_metric(s)
    searcher = plan.search_algorithm(s, req.storage_path, req.name, warm_start=warm)
    tune_config = tune.TuneConfig(
        metric=metric, mode=mode, search_alg=searcher, scheduler=plan.scheduler(s),
        num_samples=num_samples, time_budget_s=s.search.time_budget_s, reuse_actors=True,
        # An Optuna searcher already sits in a ConcurrencyLimiter; grid/random need the cap here.
        max_concurrent_trials=None if searcher else s.search.max_concurrent,
    )
    return tune.Tuner(trainable, param_space=plan.param_space(s), tune_config=tune_config, run_config=run_config)


def _plan_launch(req: SweepRequest, chain: list[str]) -> Optional[tuple[str, int, list[tuple[dict, Any]]]]:
    """(experiment to run, trials to ask Tune for, warm start) — or None when nothing is left to run.

    - new name: launch;
    - an unfinished experiment (driver killed, node lost): resume it;
    - a finished one asked for more trials than it ran (e.g. ``search.num_samples`` raised): Ray's
      restore cannot grow an experiment, so a linked ``NAME-extK`` experiment runs the extra trials,
      continuing the sweep's Optuna study (``_warm_start``);
    - a finished one asked for nothing more: nothing to run.
    """
    history: list[tuple[dict, dict]] = []
    for name in chain:
        history += finished_trials(req.storage_path, name) if _exists(req.storage_path, name) else []
    last, wanted = chain[-1], plan.num_samples(req.space)
    if not _exists(req.storage_path, last):
        _write_sweep_record(req, last, extends=None)
        return last, wanted, []
    if not finished_trials(req.storage_path, last):
        return last, wanted, []  # resume the unfinished one
    if len(history) >= req.space.trial_count():
        errored = sum(len(errored_trials(req.storage_path, n)) for n in chain)
        again = (", again after their retry" if req.retry_errored
                 else ": retry_errored=true re-runs them from their checkpoints")
        log.warning(f"{req.name}: all {len(history)} trials already finished; nothing to run" +
                    (f" ({errored} errored{again})" if errored else ""))
        return None
    if req.space.search.algorithm == "grid":
        raise SpaceError(f"grid sweep {req.name!r} already ran {len(history)} of {req.space.trial_count()} "
                         f"trials; run the extra seeds as a new experiment (name=… search.first_seed=…)")
    target, warm = f"{req.name}-ext{len(chain)}", _warm_start(req, history)
    log.warning(f"{req.name} finished {len(history)} trials; extending with {wanted - len(history)} more as {target}")
    _write_sweep_record(req, target, extends=last)
    chain.append(target)
    return target, wanted - len(history), warm


def _fit(req: SweepRequest, name: str, slots: int, num_samples: int, warm: list[tuple[dict, Any]]) -> None:
    """Run (or restore and continue) experiment ``name`` until Tune returns; raise ``SweepInterrupted``
    when it returned with trials unfinished. Final checkpoints still uploading when Tune returns
    (``sweep.uploads``) are waited for either way, before anything reads them."""
    try:
        build_tuner(req, name, slots, num_samples, warm).fit()
    finally:
        drain_uploaders(uploader_key(req.storage_path, name))
    if _interrupted(req.storage_path, name):
        raise SweepInterrupted(f"sweep {req.name!r} interrupted; its trials are saved in "
                               f"{experiment_path(req.storage_path, name)}")


def _retry_errored(req: SweepRequest, chain: list[str], slots: int) -> None:
    """With ``retry_errored``, restore every finished experiment of the chain that has errored trials:
    ``Tuner.restore(resume_errored=True)`` (``build_tuner``) puts them back to PENDING, keeping their
    ids and checkpoints, and Tune runs them to the end; its finished trials stay as they are. An
    unfinished experiment needs nothing here: resuming it retries its errored trials too."""
    for name in chain if req.retry_errored else []:
        errored = errored_trials(req.storage_path, name) if finished_trials(req.storage_path, name) else []
        if errored:
            log.warning(f"{name}: re-running {len(errored)} errored trial(s) from their checkpoints")
            _fit(req, name, slots, 0, [])


def run_sweep(req: SweepRequest) -> list[str]:
    """Launch, resume or extend the sweep (see ``_plan_launch``); return its experiment names, the
    original first."""
    import ray

    try:
        check_writable(req.storage_path)
    except StoreError as e:
        raise SpaceError(str(e)) from None
    check_same_space(req)
    t0 = time.monotonic()
    connect(req.cluster)
    try:
        slots = check_resources(req.space, req.cluster.autoscaling)
        _prepare_data_once(req.space)  # a dataset that cannot be read fails here, before anything is written
        chain = _chain(req.storage_path, req.name)
        _retry_errored(req, chain, slots)
        launch = _plan_launch(req, chain)
        if launch is None:
            return chain
        _fit(req, launch[0], slots, *launch[1:])
    finally:
        ray.shutdown()
    log.warning(f"sweep finished in {time.monotonic() - t0:.0f}s: {experiment_path(req.storage_path, req.name)}")
    return chain


def _exists(storage_path: str, name: str) -> bool:
    """Whether Ray can restore experiment ``name`` (its Tuner state was written)."""
    from ray import tune

    return tune.Tuner.can_restore(experiment_path(storage_path, name))
