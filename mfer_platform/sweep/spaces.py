"""Search spaces: YAML files that say what to vary, how to search, and what each trial needs.

A search space is a file under ``search_spaces/`` (subfolders allowed), e.g.::

    description: loss weight and type
    base: [model=mfer_atto, data=synthetic, trainer.epochs=6]   # mfer-train overrides
    params:                                                       # dotted TrainConfig paths
      loss.feature: {choice: [center, lgm, dsf]}
      loss.weight: {loguniform: [1.0e-4, 1.0e-1]}
    search: {algorithm: optuna_tpe, num_samples: 8, max_concurrent: 2, metric: val_acc, mode: max, seeds: 1}
    scheduler: {name: asha, grace_period: 1, reduction_factor: 2}
    resources: {cpu: 1, gpu: 0.25}

A study (an ablation table) is easier to read as *named rows* than as a product of axes, because
its rows are hand-picked combinations (baseline, +DS attention, full MFER…)::

    rows:                      # {row name: {dotted TrainConfig path: value}}, a grid axis ``row``
      baseline: {model.attn_variant: none, model.msc_fractions: []}
      full_mfer: {}
    baseline: {row: baseline}

``load_space`` parses and validates it — unknown parameter paths, impossible ranges, values
the trainer rejects, searcher/scheduler mismatches — raising ``SpaceError`` with the YAML key
named, *before* any trial starts. ``plan`` then turns it into Ray Tune objects.
Ray is imported lazily, so a dry run and validation stay quick.
"""
from __future__ import annotations

import copy
import difflib
import itertools
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Optional
from urllib.parse import urlsplit

import yaml
from omegaconf import OmegaConf

from mfer.conf import experiment_dataset
from mfer.config import ConfigError, TrainConfig, flatten, merge_config, to_dict
from mfer_platform.keys import COST_METRICS, ROW_KEY, SEARCH_METRICS, SEED_KEY
from mfer_platform.layout import is_uri
from mfer_platform.overrides import apply_overrides

DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "int")
ALGORITHMS = ("grid", "random", "optuna_tpe", "optuna_cmaes", "optuna_multi")
TUNE_SCHEDULERS = ("asha", "hyperband", "pbt", "none")
RDB_SCHEMES = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")  # SQLAlchemy's dialects


class SpaceError(ValueError):
    """A search space that can never run; the message names the file and the YAML key."""


@dataclass
class Param:
    key: str  # dotted TrainConfig path
    kind: str  # one of DISTRIBUTIONS
    values: list  # choice/grid options, or [low, high]


@dataclass
class SearchSettings:
    algorithm: str = "optuna_tpe"
    num_samples: int = 8
    max_concurrent: int = 2
    metric: str = "val_acc"
    mode: str = "max"
    seeds: int = 1
    first_seed: int = 0
    time_budget_s: Optional[float] = None
    # optuna_multi: extra objectives as {metric: mode}, e.g. {params: min}.
    objectives: dict[str, str] = field(default_factory=dict)
    # Optuna searches: where the study lives, an RDB URL (postgresql://host/db, sqlite:///study.db); null: a
    # journal file beside the experiment (local storage_path) or on the driver (a bucket), see sweep.study.
    storage: Optional[str] = None


@dataclass
class SchedulerSettings:
    name: str = "asha"
    grace_period: int = 1
    reduction_factor: int = 2
    perturbation_interval: int = 2  # PBT


@dataclass
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass
class SearchSpace:
    name: str
    source: str  # file path, for messages
    description: str
    base: list[str]  # mfer-train overrides applied to every trial
    base_config: TrainConfig
    base_dict: dict  # the same, as the nested mapping trials start from
    params: list[Param]
    search: SearchSettings
    scheduler: SchedulerSettings
    resources: Resources
    baseline: Optional[dict[str, Any]] = None  # the comparison row of studies: {dotted key: value}
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # {row name: {dotted key: value}}

    @property
    def factors(self) -> list[str]:
        return ([ROW_KEY] if self.rows else []) + [p.key for p in self.params]

    @property
    def dataset(self) -> str:
        """The dataset the study targets: the last ``data=`` of its base, or the data preset of its last
        ``experiment=`` recipe, before any scale preset swapped in synthetic data (published figures
        are looked up by it)."""
        for b in reversed(self.base):
            key, _, value = b.partition("=")
            if key == "data":
                return value
            if key == "experiment" and experiment_dataset(value):
                return experiment_dataset(value)
        return "synthetic"

    def epochs(self) -> int:
        return self.base_config.trainer.epochs

    def grid_size(self) -> int:
        """Configurations the grid axes span: named rows times every grid parameter's values."""
        return math.prod(len(p.values) for p in self.params if p.kind == "grid") * max(1, len(self.rows))

    def trial_count(self) -> int:
        n = self.grid_size()
        if self.search.algorithm == "grid":
            return n * self.search.seeds
        return self.search.num_samples * n * self.search.seeds


def spaces_root() -> Path:
    return Path(str(resources.files("search_spaces")))


def resolve_space_file(name: str) -> Path:
    """``quickstart`` / ``paper/component_ablation`` -> the shipped file; a path is used as is."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    f = spaces_root() / f"{name}.yaml"
    if f.is_file():
        return f
    shipped = sorted(str(q.relative_to(spaces_root()).with_suffix("")) for q in spaces_root().rglob("*.yaml"))
    raise SpaceError(f"search_space={name!r}: no such file under search_spaces/; shipped: {', '.join(shipped)}")


def compose_base(overrides: list[str]) -> dict:
    """The nested trainer config the ``mfer-train`` CLI would build from these overrides."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    # Inside a running Hydra app (mfer-sweep) the global instance is taken: set it aside.
    global_hydra = GlobalHydra.instance()
    running = global_hydra.hydra if global_hydra.is_initialized() else None
    global_hydra.clear()
    try:
        with initialize_config_module("mfer.conf", version_base="1.3"):
            cfg = compose("train", overrides=list(overrides))
    finally:
        global_hydra.clear()
        if running is not None:
            global_hydra.initialize(running)
    return OmegaConf.to_container(cfg, resolve=True)


# Config fields that name local files or folders: relative values are the user's (the driver's
# working directory), not a trial's, whose working directory Ray sets elsewhere.
PATH_KEYS = ("data.root", "data.cache_dir", "model.pretrained_file")


def absolute_paths(base: dict) -> dict:
    """``base`` with every relative ``PATH_KEYS`` value made absolute against this process's cwd."""
    out = copy.deepcopy(base)
    for key in PATH_KEYS:
        section, field_name = key.split(".")
        value = out.get(section, {}).get(field_name)
        if value and not is_uri(str(value)):
            out[section][field_name] = str(Path(str(value)).expanduser().resolve())
    return out


def _err(source: str, key: str, msg: str) -> SpaceError:
    return SpaceError(f"{source}: {key}: {msg}")


def _did_you_mean(word: str, options: Iterable[str], otherwise: str = "") -> str:
    hint = difflib.get_close_matches(word, sorted(options), n=1)
    return f"; did you mean {hint[0]}?" if hint else otherwise


def _only(source: str, where: str, d: dict, allowed: set[str]) -> None:
    for k in d:
        if k not in allowed:
            raise _err(source, f"{where}{k}",
                       f"unknown key{_did_you_mean(k, allowed)} (allowed: {', '.join(sorted(allowed))})")


def _typed(source: str, where: str, cls, raw: Any):
    raw = raw or {}
    if not isinstance(raw, dict):
        raise _err(source, where, f"must be a mapping, got {type(raw).__name__}")
    _only(source, f"{where}.", raw, {f.name for f in cls.__dataclass_fields__.values()})
    return cls(**raw)


def _parse_param(source: str, key: str, spec: Any, known: dict[str, Any]) -> Param:
    where = f"params.{key}"
    if key not in known:
        raise _err(source, where, "unknown parameter path" + _did_you_mean(
            key, known, "; use a dotted TrainConfig path such as loss.weight or model.attn_variant"))
    if key == SEED_KEY:
        raise _err(source, where, "seeds are set with search.seeds, not as a parameter")
    if not isinstance(spec, dict) or len(spec) != 1:
        raise _err(source, where, f"give exactly one distribution, e.g. {{choice: [a, b]}}; one of {DISTRIBUTIONS}")
    kind, values = next(iter(spec.items()))
    if kind not in DISTRIBUTIONS:
        raise _err(source, f"{where}.{kind}", f"unknown distribution; use one of {DISTRIBUTIONS}")
    if not isinstance(values, list) or not values:
        raise _err(source, f"{where}.{kind}", "needs a non-empty list")
    if kind in ("uniform", "loguniform", "int"):
        if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise _err(source, f"{where}.{kind}", f"needs [low, high] numbers, got {values}")
        low, high = values
        if not low < high:
            raise _err(source, f"{where}.{kind}", f"impossible range: low {low} must be < high {high}")
        if kind == "loguniform" and low <= 0:
            raise _err(source, f"{where}.{kind}", f"loguniform needs low > 0, got {low}")
        if kind == "int" and not all(float(v).is_integer() for v in values):
            raise _err(source, f"{where}.{kind}", f"int needs integer bounds, got {values}")
    return Param(key, kind, list(values))


def _check_values(source: str, p: Param, base: dict) -> None:
    """Every option (or both ends of a range) must be a value the trainer accepts."""
    probes = p.values if p.kind in ("choice", "grid") else [int(v) for v in p.values] if p.kind == "int" else p.values
    for v in probes:
        try:
            apply_overrides(base, {p.key: v})
        except (ConfigError, ValueError) as e:
            raise _err(source, f"params.{p.key}", f"value {v!r} is rejected by the trainer: {e}") from None


def _check_combination(source: str, s: SearchSpace) -> None:
    alg, sch = s.search.algorithm, s.scheduler.name
    if alg not in ALGORITHMS:
        raise _err(source, "search.algorithm", f"unknown {alg!r}; use one of {ALGORITHMS}")
    if sch not in TUNE_SCHEDULERS:
        raise _err(source, "scheduler.name", f"unknown {sch!r}; use one of {TUNE_SCHEDULERS}")
    if s.search.mode not in ("max", "min"):
        raise _err(source, "search.mode", "must be max or min")
    grid = [p.key for p in s.params if p.kind == "grid"] + ([ROW_KEY] if s.rows else [])
    if alg == "grid":
        sampled = [p.key for p in s.params if p.kind != "grid"]
        if sampled:
            raise _err(source, "search.algorithm", f"grid search cannot sample {sampled}: make them grid or use random")
    elif alg.startswith("optuna") and grid:
        raise _err(source, "search.algorithm", f"{alg} cannot take grid parameters {grid}: use choice, or algorithm grid")
    if alg.startswith("optuna") and not s.params:
        raise _err(source, "params", f"{alg} needs at least one parameter to search")
    reported = SEARCH_METRICS + COST_METRICS
    for metric, mode in s.search.objectives.items():
        if metric not in reported:
            raise _err(source, f"search.objectives.{metric}",
                       f"unknown metric{_did_you_mean(metric, reported)} (use one of {', '.join(sorted(reported))})")
        if mode not in ("max", "min"):
            raise _err(source, f"search.objectives.{metric}", f"mode must be max or min, got {mode!r}")
    if alg == "optuna_multi":
        if not s.search.objectives:
            raise _err(source, "search.objectives", "optuna_multi needs extra objectives, e.g. {params: min}")
        if sch != "none":
            raise _err(source, "scheduler.name", f"{sch} early-stops on one metric; multi-objective search needs none")
    if sch == "pbt":
        if alg != "random":
            raise _err(source, "scheduler.name", f"pbt mutates trials itself: use search.algorithm random, not {alg}")
        if not any(p.kind in ("uniform", "loguniform", "int") for p in s.params):
            raise _err(source, "params", "pbt needs at least one continuous parameter to perturb")
    if s.search.seeds > 1 and alg.startswith("optuna") and sch != "none":
        raise _err(source, "scheduler.name", f"{s.search.seeds} seeds per Optuna suggestion are averaged over "
                   f"complete runs; early stopping ({sch}) would cut repeats short: use scheduler none")
    if s.search.metric not in SEARCH_METRICS:
        raise _err(source, "search.metric", f"unknown metric {s.search.metric!r}; use one of {sorted(SEARCH_METRICS)}")


def _number(source: str, key: str, value: Any, low: float, integer: bool, above: bool = False,
            fix: str = "") -> None:
    """``value`` must be a number >= ``low`` (> ``low`` with ``above``), an integer where ``integer``:
    YAML and the CLI hand over strings and bools as readily as numbers."""
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value) and \
        (value > low if above else value >= low)
    if not ok:
        bound = f"{'>' if above else '>='} {low:g}"
        raise _err(source, key, f"must be {'an integer' if integer else 'a number'} {bound}, got {value!r}{fix}")


def _check_numbers(source: str, search: SearchSettings, sc: SchedulerSettings, resources: Resources) -> None:
    """Every numeric search/scheduler/resources setting at its edges, before anything divides by it or
    loops on it (a reduction factor of 1 never shrinks a rung: the plan would loop forever)."""
    for key in ("num_samples", "seeds", "max_concurrent"):
        _number(source, f"search.{key}", getattr(search, key), 1, integer=True)
    _number(source, "search.first_seed", search.first_seed, 0, integer=True)
    if search.time_budget_s is not None:
        _number(source, "search.time_budget_s", search.time_budget_s, 0, integer=False, above=True,
                fix="; leave it null for no budget")
    if sc.name in ("asha", "hyperband"):
        _number(source, "scheduler.reduction_factor", sc.reduction_factor, 1, integer=False, above=True,
                fix="; each rung keeps 1/reduction_factor of the trials: use 2, 3 or 4")
    if sc.name == "asha":
        _number(source, "scheduler.grace_period", sc.grace_period, 1, integer=True)
    if sc.name == "pbt":
        _number(source, "scheduler.perturbation_interval", sc.perturbation_interval, 1, integer=True)
    _number(source, "resources.cpu", resources.cpu, 0, integer=False, above=True, fix=", e.g. resources.cpu=1")
    _number(source, "resources.gpu", resources.gpu, 0, integer=False, fix=", e.g. resources.gpu=0.5")
    if resources.gpu > 1 and not float(resources.gpu).is_integer():
        raise _err(source, "resources.gpu", "fractional GPUs must be <= 1 (Ray packs fractions onto one GPU)")


def _check_storage(source: str, s: SearchSpace) -> None:
    """``search.storage``: an RDB URL Optuna's RDBStorage runs on (SQLAlchemy's dialects), without a
    password — the URL is written into the sweep record on the shared storage."""
    url, key = s.search.storage, "search.storage"
    if url is None:
        return
    fix = "; e.g. search.storage=postgresql://user@host/db, or null for a journal file beside the experiment"
    if not s.search.algorithm.startswith("optuna"):
        raise _err(source, key, f"only Optuna searches keep a study; {s.search.algorithm} has none: leave it null")
    if not isinstance(url, str) or "://" not in url:
        raise _err(source, key, f"must be a database URL or null, got {url!r}{fix}")
    scheme = url.split("://", 1)[0]
    if scheme.split("+", 1)[0] not in RDB_SCHEMES:
        raise _err(source, key, f"{scheme}:// is not a database Optuna's RDBStorage runs on (use "
                   f"{', '.join(RDB_SCHEMES)}, optionally +driver){fix}")
    if urlsplit(url).password:
        raise _err(source, key, "the URL holds a password, which the sweep record (mfer_sweep.json) would keep "
                   "on the shared storage: leave it out and give it through the database client's own config "
                   "(PGPASSWORD or ~/.pgpass for PostgreSQL, ?read_default_file=~/.my.cnf for MySQL)")


def _check_trials_differ(source: str, s: SearchSpace) -> None:
    """Several trials with no parameter, no row and one seed are the same run repeated: their spread
    would read "± 0.00" as if measured. One run (num_samples=1) stays allowed."""
    if not s.params and not s.rows and s.search.seeds == 1 and s.trial_count() > 1:
        raise _err(source, "search.num_samples", f"{s.trial_count()} trials with no params, no rows and one seed "
                   "would all be the same run: add params, set search.seeds > 1, or search.num_samples=1")


def _parse_rows(source: str, raw: Any, known: dict[str, Any], params: list[Param], base: dict) -> dict[str, dict]:
    """Named rows: every key a known TrainConfig path not varied elsewhere, every row a config the
    trainer accepts as a whole (a row's values can depend on each other, e.g. stages and variant)."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise _err(source, "rows", "must map row names to {dotted.key: value} overrides")
    varied = {p.key for p in params}
    rows = {}
    for name, overrides in raw.items():
        where = f"rows.{name}"
        overrides = overrides or {}
        if not isinstance(overrides, dict):
            raise _err(source, where, "must be a mapping of dotted TrainConfig paths to values")
        for key in overrides:
            if key == SEED_KEY:
                raise _err(source, f"{where}.{key}", "seeds are set with search.seeds, not per row")
            if key not in known:
                raise _err(source, f"{where}.{key}", "unknown parameter path" + _did_you_mean(key, known))
            if key in varied:
                raise _err(source, f"{where}.{key}", "also varied under params: set it in one place")
        try:
            apply_overrides(base, overrides)
        except (ConfigError, ValueError) as e:
            raise _err(source, where, f"rejected by the trainer: {e}") from None
        rows[str(name)] = dict(overrides)
    return rows


def _check_cells(source: str, s: SearchSpace) -> None:
    """Rows and grid values are each checked against the base alone; a combination of them can still
    be refused (DS attention stages on a ViT): every cell of the grid, as a trial builds it, is checked too."""
    grid = [p for p in s.params if p.kind == "grid"]
    if len(grid) + bool(s.rows) < 2:
        return  # one axis: each of its values was checked already
    for row in list(s.rows) or [None]:
        for values in itertools.product(*(p.values for p in grid)):
            cell = dict(zip((p.key for p in grid), values))
            try:
                apply_overrides(s.base_dict, {**s.rows.get(row, {}), **cell})
            except (ConfigError, ValueError) as e:
                raise _err(source, f"rows.{row}" if row else "params", f"with {cell}: rejected by the trainer: "
                           f"{e}") from None


def swap_values(raw: dict, swaps: dict[str, dict], source: str) -> dict:
    """``raw`` with a scale preset's ``swaps`` ({dotted key: {study's value: scale's value}}) applied to the
    values the study names for each key — grid and choice options, rows, baseline — so e.g. scale=smoke
    keeps a study's backbone axis with each full-size model swapped for a CPU-sized one of its family.
    Values not listed stay as they are."""
    out = copy.deepcopy(raw)
    # a params or rows section that is no mapping is refused by parse_space, naming it
    params, rows = (out.get(k) if isinstance(out.get(k), dict) else {} for k in ("params", "rows"))
    for key, table in (swaps or {}).items():
        def swap(v: Any) -> Any:
            return table.get(v, v) if isinstance(v, str) else v

        spec = params.get(key)
        for kind in ("choice", "grid"):
            if isinstance(spec, dict) and isinstance(spec.get(kind), list):
                swapped = [swap(v) for v in spec[kind]]
                if len({json.dumps(v) for v in swapped}) < len(swapped):
                    raise _err(source, f"params.{key}.{kind}", f"the scale preset swaps {spec[kind]} for "
                               f"{swapped}, two of them alike: list one value per family, or use scale=full")
                spec[kind] = swapped
        for section in [*rows.values(), out.get("baseline")]:
            if isinstance(section, dict) and key in section:
                section[key] = swap(section[key])
    return out


def _compose(source: str, base: list[str]) -> tuple[dict, TrainConfig]:
    """The base composed (as a dict, paths made absolute) and merged onto the schema, the registries not
    yet asked: a mistyped path or section key is refused before torch and timm are imported (``_validated``)."""
    try:
        base_dict = absolute_paths(compose_base(base))
        return base_dict, merge_config(base_dict)
    except Exception as e:  # Hydra and config errors both say which override failed
        raise _err(source, "base", str(e)) from None


def _settings(source: str, raw: dict,
              overrides: dict[str, Any]) -> tuple[SearchSettings, SchedulerSettings, Resources]:
    """The search, scheduler and resources sections with the CLI's ``overrides`` set and every number
    checked: structure only, so refused before the base's values are validated (torch, timm)."""
    sections = {"search": _typed(source, "search", SearchSettings, raw.get("search")),
                "scheduler": _typed(source, "scheduler", SchedulerSettings, raw.get("scheduler")),
                "resources": _typed(source, "resources", Resources, raw.get("resources"))}
    for key, value in overrides.items():
        section, _, field_name = key.partition(".")
        target = sections.get(section)
        if target is None or not hasattr(target, field_name):
            raise _err(source, key, "only search.*, scheduler.* and resources.* can be overridden from the CLI")
        setattr(target, field_name, value)
    search, scheduler, resources = sections.values()
    _check_numbers(source, search, scheduler, resources)
    return search, scheduler, resources


def _validated(source: str, schema: TrainConfig) -> TrainConfig:
    """``schema`` checked against the registries (datasets, backbones, methods), which import torch and timm."""
    from mfer.validation import to_train_config

    try:
        return to_train_config(schema)
    except Exception as e:
        raise _err(source, "base", str(e)) from None


def _check_baseline(source: str, space: SearchSpace) -> None:
    for k, v in space.baseline.items():
        if k not in space.factors:
            raise _err(source, f"baseline.{k}", f"not a varied parameter ({space.factors})")
        if k == ROW_KEY and v not in space.rows:
            raise _err(source, "baseline.row", f"no row named {v!r} (rows: {', '.join(space.rows)})")



def parse_space(raw: dict, name: str, source: str, overrides: dict[str, Any] | None = None,
                extra_base: list[str] | None = None, swaps: dict[str, dict] | None = None) -> SearchSpace:
    """Validate a parsed YAML mapping; ``overrides`` set search/scheduler/resources fields, ``extra_base``
    appends mfer-train overrides to the file's ``base`` (both from the CLI), ``swaps`` are a scale
    preset's (``swap_values``)."""
    if not isinstance(raw, dict):
        raise SpaceError(f"{source}: the file must hold a mapping of keys (description, base, params, search…)")
    raw = swap_values(raw, swaps or {}, source)
    _only(source, "", raw, {"description", "base", "params", "rows", "search", "scheduler", "resources", "baseline"})
    base = raw.get("base") or []
    if not isinstance(base, list) or not all(isinstance(b, str) for b in base):
        raise _err(source, "base", "must be a list of mfer-train overrides such as model=mfer_atto")
    base = base + list(extra_base or [])
    base_dict, schema = _compose(source, base)
    known = flatten(to_dict(schema))  # the paths; validating (below) changes values only
    if not isinstance(raw.get("params") or {}, dict):
        raise _err(source, "params", "must map dotted TrainConfig paths to one distribution each, e.g. "
                   "params: {loss.weight: {loguniform: [1.0e-4, 1.0e-1]}}")
    params = [_parse_param(source, k, v, known) for k, v in (raw.get("params") or {}).items()]
    search, scheduler, resources = _settings(source, raw, overrides or {})
    space = SearchSpace(
        name=name, source=source, description=str(raw.get("description", "")), base=base,
        base_config=_validated(source, schema), base_dict=base_dict, params=params,
        search=search, scheduler=scheduler, resources=resources,
        baseline=raw.get("baseline"), rows=_parse_rows(source, raw.get("rows"), known, params, base_dict),
    )
    _check_combination(source, space)
    _check_trials_differ(source, space)
    _check_storage(source, space)
    for p in params:
        _check_values(source, p, base_dict)
    _check_cells(source, space)
    if space.baseline is not None:
        _check_baseline(source, space)
    return space


def load_space(name: str, overrides: dict[str, Any] | None = None, extra_base: list[str] | None = None,
               swaps: dict[str, dict] | None = None) -> SearchSpace:
    path = resolve_space_file(name)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: not valid YAML: {e}") from None
    return parse_space(raw, name, str(path), overrides, extra_base, swaps)
