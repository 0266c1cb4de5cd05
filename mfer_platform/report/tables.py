"""Comparison tables — Markdown, CSV, LaTeX, and the HTML report's copy — from one Comparison.

The grid of cells is built once, as plain Unicode text; each format only escapes and joins it,
so the files can never disagree. Display cells are percentages (the compactness ratio is shown
as itself) and every one carries its n (fer_pitfalls #1: no number without its sample size);
the CSV is long-format with full precision values, for anyone who wants to recompute.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from mfer_platform.keys import METRIC_MODES, PRETTY, RATIOS
from mfer_platform.results.cells import fmt, metric_cell, p_text
from mfer_platform.results.stats import NO_TEST, PAIRED, Comparison

if TYPE_CHECKING:
    from mfer_platform.report.published import PaperColumn

BEST, BASELINE, REFERENCE = "★", "baseline", "reference"


def column_name(metric: str, delta_vs: Optional[str] = None) -> str:
    """``val acc (%)``, or ``Δ val acc vs baseline (pp)``; lower-is-better metrics carry ``↓``."""
    name = PRETTY.get(metric, metric) + (" ↓" if METRIC_MODES.get(metric) == "min" else "")
    if delta_vs is None:
        return name + ("" if metric in RATIOS else " (%)")
    return f"Δ {name} vs {delta_vs}" + ("" if metric in RATIOS else " (pp)")


def delta_cell(cmp: Comparison, s: Mapping[str, Any]) -> str:
    """``+1.20 [0.31, 2.09] p=0.024 Holm (paired t, n=3 pairs)`` against the reference group."""
    if s["group"] == cmp.reference:
        return BASELINE if cmp.reference_is_baseline else REFERENCE
    if s["n"] == 0 or math.isnan(s["delta"]):
        return "– (n=0)"
    m = s["metric"]
    delta = fmt(m, s["delta"], signed=True)
    if s["test"] == NO_TEST:
        return f"{delta} (no test: n={s['n']} vs {cmp.stat(cmp.reference, s['metric'])['n']})"
    n = f"n={s['n_pairs']} pairs" if s["test"] == PAIRED else f"n={s['n']} vs {cmp.stat(cmp.reference, s['metric'])['n']}"
    ci = f"[{fmt(m, s['delta_ci_low'], True)}, {fmt(m, s['delta_ci_high'], True)}]"
    p = "p=n/a" if math.isnan(s["p_holm"]) else p_text(s["p_holm"])
    return f"{delta} {ci} {p} Holm ({s['test']}, {n})"


def delta_metrics(cmp: Comparison) -> list[str]:
    """Δ columns shown: the selection metric and test accuracy (the CSV has every metric's Δ)."""
    return [m for m in dict.fromkeys((cmp.spec.metric, "test_acc")) if m in cmp.spec.metrics]


def grid(cmp: Comparison, paper: Optional[PaperColumn] = None) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the display table, best group first; ``paper``: published figures beside ours."""
    ref = BASELINE if cmp.reference_is_baseline else REFERENCE
    header = ["group", "n", *([paper.header] if paper else []), *[column_name(m) for m in cmp.spec.metrics],
              *[column_name(m, delta_vs=ref) for m in delta_metrics(cmp)]]
    rows = []
    for g in cmp.groups.itertuples():
        mark = (f"{BEST} " if g.is_best else "") + g.group + (f" ({ref})" if g.is_reference else "")
        cells = [mark, f"{g.n}", *([paper.cells[g.group]] if paper else [])]
        cells += [metric_cell(cmp.stat(g.group, m)) for m in cmp.spec.metrics]
        cells += [delta_cell(cmp, cmp.stat(g.group, m)) for m in delta_metrics(cmp)]
        rows.append(cells)
    return header, rows


def caption(cmp: Comparison) -> str:
    conf = f"{100 * cmp.spec.confidence:g}"
    ref = (f"the baseline {cmp.reference}" if cmp.reference_is_baseline
           else f"the best group {cmp.reference} (no baseline named in the search space)")
    left_out = ", ".join(f"{n} {status}" for status, n in sorted(cmp.excluded.items())) or "none"
    k = len(cmp.groups) - 1
    ratios = (" Compactness = mean distance of a validation (test) feature to its class centroid over the mean "
              "distance between centroids, a ratio (our measure, not the paper's; ↓ lower = tighter classes)."
              if RATIOS & set(cmp.spec.metrics) else "")
    return (f"Mean ± sample std [{conf}% CI, Student t] over n seeds, in %; completed trials only "
            f"(left out: {left_out}). {BEST} = best mean {cmp.spec.metric} ({cmp.spec.mode}; validation, "
            f"never test). Δ = group mean − mean of {ref}, in percentage points, with the test's {conf}% CI; "
            f"paired t-test on the seeds both ran, Welch t-test when fewer than 2 are shared; p-values "
            f"Holm-corrected over the {k} comparison{'s' if k != 1 else ''} of each metric.{ratios}")


_LATEX = str.maketrans({
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\^{}", "±": r"$\pm$", "Δ": r"$\Delta$", "★": r"$\star$", "<": r"$<$",
    ">": r"$>$", "−": "-", "–": "--",
})


def latex_escape(text: str) -> str:
    return text.translate(_LATEX)


def _markdown_escape(text: str) -> str:
    return text.replace("|", r"\|")


def _render(cmp: Comparison, escape: Callable[[str], str],
            paper: Optional[PaperColumn]) -> tuple[list[str], list[list[str]], str]:
    header, rows = grid(cmp, paper)
    cap = caption(cmp) + (f" {paper.note}" if paper else "")
    return [escape(h) for h in header], [[escape(c) for c in r] for r in rows], escape(cap)


def to_markdown(cmp: Comparison, paper: Optional[PaperColumn] = None) -> str:
    header, rows, cap = _render(cmp, _markdown_escape, paper)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + f"\n\n{cap}\n"


def to_latex(cmp: Comparison, paper: Optional[PaperColumn] = None) -> str:
    header, rows, cap = _render(cmp, latex_escape, paper)
    body = [" & ".join(r) + r" \\" for r in rows]
    return "\n".join([
        r"% requires \usepackage{booktabs}",
        r"\begin{table}[t]", r"\centering", r"\small",
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
        " & ".join(header) + r" \\", r"\midrule", *body, r"\bottomrule", r"\end{tabular}",
        rf"\caption{{{cap}}}", r"\end{table}", "",
    ])


def to_html(cmp: Comparison, paper: Optional[PaperColumn] = None) -> str:
    header, rows, cap = _render(cmp, html.escape, paper)
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return (f'<table class="comparison"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            f'<p class="caption">{cap}</p>')


def to_csv(cmp: Comparison, paper: Optional[PaperColumn] = None) -> str:
    """Long format, fractions at full precision: one row per group x metric, with the factor values
    (and the ``paper`` cell of the group when given)."""
    factors = cmp.groups[["group", *cmp.spec.factors, "is_best", "is_reference"]]
    if paper:
        factors = factors.assign(paper=factors["group"].map(paper.cells))
    return cmp.stats.merge(factors, on="group", how="left").to_csv(index=False)


def write_tables(cmp: Comparison, out_dir: str | Path, paper: Optional[PaperColumn] = None) -> dict[str, Path]:
    """``comparison.md``, ``comparison.csv`` and ``comparison.tex`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
        paths[ext] = out / f"comparison.{ext}"
        paths[ext].write_text(render(cmp, paper), encoding="utf-8")
    return paths
