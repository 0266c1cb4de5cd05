"""Compile a validated SearchSpace into Ray Tune objects: param space, searcher, scheduler.

One function per Ray concept, each mapping our YAML vocabulary onto Ray 2.60's current API.
Nothing opaque to the searcher (no ``tune.sample_from``): every parameter is a Tune domain
Optuna can model. Named rows are a grid axis ``row`` of their names. Seeds are a grid axis for
grid/random search, and a Repeater for Optuna (``study.StudyRepeater``: one Optuna trial per
suggestion, the mean over its seeds once all completed).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Optional

from mfer_platform.keys import ROW_KEY, SEED_KEY
from mfer_platform.overrides import encode_choice
from mfer_platform.sweep.spaces import SearchSpace

log = logging.getLogger("mfer_platform")


def param_space(space: SearchSpace) -> dict[str, Any]:
    from ray import tune

    out: dict[str, Any] = {ROW_KEY: tune.grid_search(list(space.rows))} if space.rows else {}
    for p in space.params:
        if p.kind == "choice":
            out[p.key] = tune.choice([encode_choice(v) for v in p.values])
        elif p.kind == "grid":
            out[p.key] = tune.grid_search([encode_choice(v) for v in p.values])
        elif p.kind == "uniform":
            out[p.key] = tune.uniform(*p.values)
        elif p.kind == "loguniform":
            out[p.key] = tune.loguniform(*p.values)
        else:  # int, inclusive bounds
            out[p.key] = tune.randint(int(p.values[0]), int(p.values[1]) + 1)
    if not space.search.algorithm.startswith("optuna"):
        out[SEED_KEY] = tune.grid_search(seeds(space))
    return out


def seeds(space: SearchSpace) -> list[int]:
    return list(range(space.search.first_seed, space.search.first_seed + space.search.seeds))


def search_algorithm(space: SearchSpace, storage_path: str, name: str, seed: int = 0,
                     warm_start: Optional[list[tuple[dict, Any]]] = None):
    """None for grid/random (Ray's variant generator); Optuna in a ConcurrencyLimiter otherwise, its
    study ``name`` (the sweep's) in persistent storage (``study``): a new sweep starts it, an extension
    continues it.

    ``warm_start``: (config, reward) pairs of a sweep from before persistent studies, added to its new
    study as complete trials; not with seeds > 1, where rewards are means over repeats.
    """
    s = space.search
    if not s.algorithm.startswith("optuna"):
        return None
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    from mfer_platform.sweep.study import StudyRepeater, StudySearch, close_orphans, study_storage

    if s.algorithm == "optuna_cmaes":
        sampler = optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    elif s.algorithm == "optuna_multi":
        sampler = optuna.samplers.NSGAIISampler(seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(5, s.num_samples // 3)))
    warm = dict(points_to_evaluate=[c for c, _ in warm_start], evaluated_rewards=[r for _, r in warm_start]) \
        if warm_start and s.seeds == 1 else {}
    storage, where = study_storage(space, storage_path, name)
    orphans = close_orphans(storage, name)
    stale = f" ({orphans} trials a killed driver left running marked failed)" if orphans else ""
    log.warning(f"Optuna study {name!r}{stale}: watch it live with  optuna-dashboard {where}")
    objectives = dict(metric=[s.metric, *s.objectives], mode=[s.mode, *s.objectives.values()]) \
        if s.algorithm == "optuna_multi" else {}
    searcher = StudySearch(epochs=space.epochs(), sampler=sampler, study_name=name, storage=storage,
                           **objectives, **warm)
    if s.seeds > 1:
        searcher = StudyRepeater(searcher, repeat=s.seeds)
    # A suggestion's repeats must be able to run together, or the Repeater would wait forever.
    return ConcurrencyLimiter(searcher, max_concurrent=max(s.max_concurrent, s.seeds))


def scheduler(space: SearchSpace):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandScheduler, PopulationBasedTraining

    sc, epochs = space.scheduler, space.epochs()
    if sc.name == "asha":
        return ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=sc.grace_period,
                             reduction_factor=sc.reduction_factor)
    if sc.name == "hyperband":
        return HyperBandScheduler(time_attr="training_iteration", max_t=epochs, reduction_factor=sc.reduction_factor)
    if sc.name == "pbt":
        space_domains = param_space(space)
        mutations = {p.key: space_domains[p.key] for p in space.params if p.kind in ("uniform", "loguniform", "int")}
        return PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=sc.perturbation_interval,
                                       hyperparam_mutations=mutations)
    return FIFOScheduler()


def checkpoint_epochs(space: SearchSpace) -> tuple[int, ...]:
    """Epochs at which the scheduler pauses or clones trials, so each needs a checkpoint there: PBT's
    perturbation boundaries, and HyperBand's milestones (Ray's brackets: r0 = int(max_t·eta^-s), then
    ×eta up to max_t, ``ray/tune/schedulers/hyperband.py``). ASHA only stops trials: none needed."""
    sc, epochs = space.scheduler, space.epochs()
    if sc.name == "pbt":
        return tuple(range(sc.perturbation_interval, epochs + 1, sc.perturbation_interval))
    if sc.name != "hyperband":
        return ()
    eta, marks = sc.reduction_factor, set()
    for s in range(int(round(math.log(epochs) / math.log(eta))) + 1):  # Ray's s_max + 1 brackets
        r = int(epochs * eta ** (-s))
        while 0 < r < epochs:
            marks.add(r)
            r = int(min(r * eta, epochs))
    return tuple(sorted(marks))


def num_samples(space: SearchSpace) -> int:
    """Tune's num_samples: grid repeats the grid once; Optuna with seeds counts every repeat."""
    if space.search.algorithm == "grid":
        return 1
    if space.search.algorithm.startswith("optuna"):
        return space.search.num_samples * space.search.seeds
    return space.search.num_samples


def trials_launched(space: SearchSpace, samples: int) -> int:
    """How many trials Tune creates for ``num_samples=samples``: for grid/random search every grid
    axis (rows, grid parameters, seeds) multiplies it; Optuna's count already holds the seeds."""
    if space.search.algorithm.startswith("optuna"):
        return samples
    return samples * space.grid_size() * space.search.seeds


def tune_metric(space: SearchSpace) -> tuple[Optional[str], Optional[str]]:
    """Metric/mode for TuneConfig; multi-objective search declares them on the searcher instead."""
    if space.search.algorithm == "optuna_multi":
        return None, None
    return space.search.metric, space.search.mode


def estimated_trial_epochs(space: SearchSpace) -> tuple[int, int]:
    """(upper bound, expected with early stopping) trial-epochs of the whole sweep."""
    total = space.trial_count() * space.epochs()
    if space.scheduler.name not in ("asha", "hyperband"):
        return total, total
    # Successive halving: 1/eta of trials survive each rung (grace, grace*eta, ...).
    eta, rung, epochs = space.scheduler.reduction_factor, max(1, space.scheduler.grace_period), space.epochs()
    alive, spent, prev = 1.0, 0.0, 0
    while rung < epochs:
        spent += alive * (rung - prev)
        alive, prev, rung = alive / eta, rung, rung * eta
    spent += alive * (epochs - prev)
    return total, int(round(space.trial_count() * spent))
