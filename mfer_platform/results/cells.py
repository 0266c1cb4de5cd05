"""How a result is written as text: a metric's value (a percentage, or a ratio as itself) and a
mean ± CI cell that always carries its n (fer_pitfalls #1) — shared by the comparison tables, the
model card and the command line, so a number reads the same everywhere."""
from __future__ import annotations

from typing import Any, Mapping

from mfer_platform.keys import RATIOS


def fmt(metric: str, x: float, signed: bool = False) -> str:
    """A metric's value for display: ``81.23`` (percent) or ``0.412`` (ratio)."""
    scaled, digits = (x, 3) if metric in RATIOS else (100 * x, 2)
    return f"{scaled:{'+' if signed else ''}.{digits}f}"


def p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def metric_cell(s: Mapping[str, Any]) -> str:
    """``81.23 ± 0.45 [80.11, 82.35] (n=3)``; a single run shows its value and n=1 only."""
    if s["n"] == 0:
        return "– (n=0)"
    m = s["metric"]
    if s["n"] < 2:
        return f"{fmt(m, s['mean'])} (n={s['n']})"
    return f"{fmt(m, s['mean'])} ± {fmt(m, s['std'])} [{fmt(m, s['ci_low'])}, {fmt(m, s['ci_high'])}] (n={s['n']})"
