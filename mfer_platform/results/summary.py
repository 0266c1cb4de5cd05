"""A whole sweep's comparison: all trials of its experiments (an extended sweep has several),
compared together — the table ``mfer-sweep`` ends with, and what reports, figures and exports
start from. Reading never writes; ``ingest_sweep`` is the explicit step that refreshes the store."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from mfer_platform.layout import experiment_chain, read_sweep_record
from mfer_platform.results import store
from mfer_platform.results.stats import Comparison, CrossComparison, compare, cross_compare, spec_from_record


@dataclass
class SweepResults:
    experiments: list[str]  # the sweep's experiments, oldest first
    record: dict  # the first experiment's mfer_sweep.json (extensions repeat its space)
    trials: pd.DataFrame  # all their trials (column ``experiment`` says whose)
    epochs: pd.DataFrame  # all their trials' epochs
    cmp: Comparison
    cross: Optional[CrossComparison] = None  # rows x the other varied factors, each column vs its own baseline row


def sweep_experiments(storage_path: str, name: str) -> list[str]:
    """The sweep ``name`` with every extension of it (``layout.experiment_chain``); an error naming
    the missing sweep record when ``name`` is no sweep."""
    read_sweep_record(storage_path, name)  # fails early, naming the path, if ``name`` is not a sweep
    return experiment_chain(storage_path, name)


def ingest_sweep(storage_path: str, name: str) -> list[store.IngestSummary]:
    """Ingest every experiment of the sweep into the results store (the one step that writes it)."""
    return [store.ingest(storage_path, experiment) for experiment in sweep_experiments(storage_path, name)]


def compare_experiments(storage_path: str, experiments: list[str], baseline: Optional[dict] = None) -> SweepResults:
    """Read the experiments' trials (from the store where it is current) and compare them as one sweep."""
    parts = [store.read_experiment(storage_path, name) for name in experiments]
    trials = pd.concat([t for t, _ in parts], ignore_index=True)
    epochs = pd.concat([e for _, e in parts], ignore_index=True)
    record = read_sweep_record(storage_path, experiments[0])
    spec = spec_from_record(record, baseline)
    return SweepResults(experiments, record, trials, epochs, compare(trials, spec),
                        cross_compare(trials, spec, list(record.get("rows") or {})))


def whole_sweep(storage_path: str, name: str, baseline: Optional[dict] = None) -> SweepResults:
    return compare_experiments(storage_path, sweep_experiments(storage_path, name), baseline)
