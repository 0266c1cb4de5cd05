"""How a result is written as text: a metric's value (a percentage, or a ratio as itself) and a
mean ± CI cell that always carries its n (fer_pitfalls #1) — shared by the comparison tables, the
model card and the command line, so a number reads the same everywhere."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from mfer_platform.keys import RATIOS


def unit_scale(metric: str) -> float:
    """What a metric's value is multiplied by for display: 100 for fractions (shown in %), 1 for
    ratios and losses (shown as they are) — one unit in tables and figures alike."""
    return 1.0 if metric in RATIOS or "loss" in metric else 100.0


def fmt(metric: str, x: float, signed: bool = False) -> str:
    """A metric's value for display: ``81.23`` (percent) or ``0.412`` (ratio)."""
    scale = unit_scale(metric)
    digits = 2 if scale == 100 else 3
    return f"{scale * x:{'+' if signed else ''}.{digits}f}"


def p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def metric_cell(s: Mapping[str, Any], row_n: Optional[int] = None) -> str:
    """``81.23 ± 0.45 [80.11, 82.35] (n=3)``; a single run shows its value and n=1 only. ``row_n``: the
    n the table's n column already shows for the row — the cell then names its n only where it differs
    (a metric some trials lack), instead of repeating it in every cell."""
    if s["n"] == 0:
        return "– (n=0)"
    m = s["metric"]
    n = "" if s["n"] == row_n else f" (n={s['n']})"
    if s["n"] < 2:
        return f"{fmt(m, s['mean'])}{n}"
    return f"{fmt(m, s['mean'])} ± {fmt(m, s['std'])} [{fmt(m, s['ci_low'])}, {fmt(m, s['ci_high'])}]{n}"
