"""The table a sweep ends with: ingest its experiments (an extended sweep has several) and compare."""
from __future__ import annotations

from typing import Optional

import pandas as pd

from mfer_platform import store
from mfer_platform.published import PaperColumn, paper_column
from mfer_platform.stats import Comparison, compare, spec_from_record


def sweep_comparison(storage_path: str, experiments: list[str]) -> tuple[Comparison, pd.DataFrame, Optional[PaperColumn]]:
    """Ingest every experiment of the sweep into the results store; compare all their trials; for a
    paper study, the published figures to print beside them."""
    for name in experiments:
        store.ingest(storage_path, name)
    trials = pd.concat([store.load_trials(storage_path, name) for name in experiments], ignore_index=True)
    record = store.read_sweep_record(storage_path, experiments[0])
    cmp = compare(trials, spec_from_record(record))
    return cmp, trials, paper_column(cmp, record)
