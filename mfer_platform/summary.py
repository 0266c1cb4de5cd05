"""A whole sweep's comparison: ingest its experiments (an extended sweep has several) and compare
all their trials together — the table ``mfer-sweep`` ends with, and what reports, figures and
exports start from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd

from mfer_platform import store
from mfer_platform.published import PaperColumn, paper_column
from mfer_platform.stats import Comparison, compare, spec_from_record


@dataclass
class SweepResults:
    experiments: list[str]  # the sweep's experiments, oldest first
    record: dict  # the first experiment's mfer_sweep.json (extensions repeat its space)
    trials: pd.DataFrame  # all their trials (column ``experiment`` says whose)
    cmp: Comparison
    paper: Optional[PaperColumn]  # published figures beside ours (paper studies only)

    def epochs(self, storage_path: str) -> pd.DataFrame:
        return pd.concat([store.load_epochs(storage_path, name) for name in self.experiments], ignore_index=True)


def sweep_comparison(storage_path: str, experiments: list[str], baseline: Optional[dict] = None) -> SweepResults:
    """Ingest every experiment of the sweep into the results store; compare all their trials; for a
    paper study, the published figures to print beside them."""
    for name in experiments:
        store.ingest(storage_path, name)
    trials = pd.concat([store.load_trials(storage_path, name) for name in experiments], ignore_index=True)
    record = store.read_sweep_record(storage_path, experiments[0])
    cmp = compare(trials, spec_from_record(record, baseline))
    return SweepResults(experiments, record, trials, cmp, paper_column(cmp, record))


def whole_sweep(storage_path: str, name: str, baseline: Optional[dict] = None) -> SweepResults:
    """The sweep named ``name`` with every extension of it (see ``store.experiment_chain``)."""
    return sweep_comparison(storage_path, store.experiment_chain(storage_path, name), baseline)
