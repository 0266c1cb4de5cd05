"""Comparison tables — Markdown, CSV, LaTeX, and the HTML report's copy — from one Comparison.

The grid of cells is built once, as plain Unicode text; each format only escapes and joins it,
so the files can never disagree. Display cells are percentages (the compactness ratio is shown
as itself) and every one carries its n (fer_pitfalls #1: no number without its sample size);
the CSV is long-format with full precision values, for anyone who wants to recompute.
"""
from __future__ import annotations

import html
import math
import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

import pandas as pd

from mfer_platform.keys import METRIC_MODES, PRETTY, RATIOS
from mfer_platform.results.cells import fmt, metric_cell, p_text
from mfer_platform.results.stats import NO_TEST, PAIRED, Comparison, CrossComparison
from mfer_platform.terminal import WIDTH, clip, columns, fill, pad

if TYPE_CHECKING:
    from mfer_platform.report.published import PaperColumn

BEST, BASELINE, REFERENCE = "★", "baseline", "reference"


def column_name(metric: str, delta_vs: Optional[str] = None) -> str:
    """``val acc (%)``, or ``Δ val acc vs baseline (pp)``; lower-is-better metrics carry ``↓``."""
    name = PRETTY.get(metric, metric) + (" ↓" if METRIC_MODES.get(metric) == "min" else "")
    if delta_vs is None:
        return name + ("" if metric in RATIOS else " (%)")
    return f"Δ {name} vs {delta_vs}" + ("" if metric in RATIOS else " (pp)")


def delta_cell(cmp: Comparison, s: Mapping[str, Any], brief: bool = False) -> str:
    """``+1.20 [0.31, 2.09] p=0.024 Holm (paired t, n=3 pairs)`` against the reference group; ``brief``:
    ``+1.20 [0.31, 2.09] (n=3)``, the CI and n without the test (the caption names it)."""
    if s["group"] == cmp.reference:
        return BASELINE if cmp.reference_is_baseline else REFERENCE
    if s["n"] == 0 or math.isnan(s["delta"]):
        return "– (n=0)"
    m = s["metric"]
    delta = fmt(m, s["delta"], signed=True)
    if s["test"] == NO_TEST:
        return f"{delta} (n={s['n']}, no test)" if brief else f"{delta} (no test)"
    pairs = "" if brief else " pairs"
    n = f"n={s['n_pairs']}{pairs}" if s["test"] == PAIRED else f"n={s['n']} vs {cmp.stat(cmp.reference, s['metric'])['n']}"
    ci = f"[{fmt(m, s['delta_ci_low'], True)}, {fmt(m, s['delta_ci_high'], True)}]"
    if brief:
        return f"{delta} {ci} ({n})"
    p = "p=n/a" if math.isnan(s["p_holm"]) else p_text(s["p_holm"])
    return f"{delta} {ci} {p} Holm ({s['test']}, {n})"


def delta_metrics(cmp: Comparison) -> list[str]:
    """Δ columns shown: the selection metric and test accuracy (the CSV has every metric's Δ)."""
    return [m for m in dict.fromkeys((cmp.spec.metric, "test_acc")) if m in cmp.spec.metrics]


def grid(cmp: Comparison, paper: Optional[PaperColumn] = None,
         short: bool = False) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the display table, best group first; ``paper``: published figures beside ours;
    ``short``: groups by their short labels (the report's legend maps them to configs). A cell names
    its n only where it differs from the n column."""
    ref = BASELINE if cmp.reference_is_baseline else REFERENCE
    header = ["group", "n", *([paper.header] if paper else []), *[column_name(m) for m in cmp.spec.metrics],
              *[column_name(m, delta_vs=ref) for m in delta_metrics(cmp)]]
    rows = []
    for g in cmp.groups.itertuples():
        label = g.label if short else g.group
        mark = (f"{BEST} " if g.is_best else "") + label + (f" ({ref})" if g.is_reference else "")
        cells = [mark, f"{g.n}", *([paper.cells[g.group]] if paper else [])]
        cells += [metric_cell(cmp.stat(g.group, m), g.n) for m in cmp.spec.metrics]
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
    return (f"Mean ± sample std [{conf}% CI, Student t] over the n seeds of the n column (a cell names its own n "
            f"where some trials lack that metric), in %; completed trials only "
            f"(left out: {left_out}). {BEST} = best mean {cmp.spec.metric} ({cmp.spec.mode}; validation, "
            f"never test). Δ = group mean − mean of {ref}, in percentage points, with the test's {conf}% CI; "
            f"paired t-test on the seeds both ran, Welch t-test when fewer than 2 are shared; p-values "
            f"Holm-corrected over the {k} comparison{'s' if k != 1 else ''} of each metric; no test where either "
            f"group has fewer than 2 seeds.{ratios}")


_LATEX = str.maketrans({
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\^{}", "±": r"$\pm$", "Δ": r"$\Delta$", "★": r"$\star$", "<": r"$<$",
    ">": r"$>$", "−": "-", "–": "--",
})


def latex_escape(text: str) -> str:
    return text.translate(_LATEX)


def _markdown_escape(text: str) -> str:
    return text.replace("|", r"\|")


def _render(cmp: Comparison, escape: Callable[[str], str], paper: Optional[PaperColumn],
            short: bool = False) -> tuple[list[str], list[list[str]], str]:
    header, rows = grid(cmp, paper, short)
    cap = caption(cmp) + (f" {paper.note}" if paper else "")
    return [escape(h) for h in header], [[escape(c) for c in r] for r in rows], escape(cap)


def _markdown_table(header: list[str], rows: list[list[str]], cap: str) -> str:
    """An escaped grid as a Markdown table, its caption below."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + f"\n\n{cap}\n"


def to_markdown(cmp: Comparison, paper: Optional[PaperColumn] = None) -> str:
    return _markdown_table(*_render(cmp, _markdown_escape, paper))


def to_latex(cmp: Comparison, paper: Optional[PaperColumn] = None) -> str:
    return _latex_table(*_render(cmp, latex_escape, paper))


def _latex_table(header: list[str], rows: list[list[str]], cap: str) -> str:
    """An escaped grid as a booktabs table with its caption."""
    body = [" & ".join(r) + r" \\" for r in rows]
    return "\n".join([
        r"% requires \usepackage{booktabs}",
        r"\begin{table}[t]", r"\centering", r"\small",
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
        " & ".join(header) + r" \\", r"\midrule", *body, r"\bottomrule", r"\end{tabular}",
        rf"\caption{{{cap}}}", r"\end{table}", "",
    ])


def to_html(cmp: Comparison, paper: Optional[PaperColumn] = None, short: bool = False) -> str:
    return _html_table(*_render(cmp, html.escape, paper, short))


def _html_table(header: list[str], rows: list[list[str]], cap: str) -> str:
    """An escaped grid as the HTML report's table, its caption below."""
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


# ---------------------------------------------------------------- rows x columns (method x backbone)
_STD = re.compile(r"\s±\s\S+")  # a cell's sample std (the brief copy keeps the mean, CI and n)


def cross_metrics(cross: CrossComparison) -> list[str]:
    """The metrics a cross table is shown for: the Δ columns of the comparison tables."""
    return next((delta_metrics(c) for c in cross.columns.values() if c is not None), [])


def cross_cell(cross: CrossComparison, row: str, column: str, metric: str, brief: bool = False) -> str:
    """The baseline row's mean [CI] (n), any other row's Δ vs its column's baseline with the test's CI and n."""
    if cross.columns[column] is None:
        return f"– (no completed {cross.baseline_row})"
    s = cross.stat(row, column, metric)
    if s is None:
        return "– (n=0)"
    if row == cross.baseline_row:
        return _STD.sub("", metric_cell(s)) if brief else metric_cell(s)
    return delta_cell(cross.columns[column], s, brief)


def cross_grid(cross: CrossComparison, metric: str, brief: bool = False) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per study row, the baseline first; one column per value of the other factors,
    headed by the value alone where one factor makes the columns (``resnet18``, the factor named once)."""
    rows = [[f"{r} ({BASELINE})" if r == cross.baseline_row and r != BASELINE else r,
             *(cross_cell(cross, r, c, metric, brief) for c in cross.columns)] for r in cross.rows]
    factors = {c.split("=", 1)[0] for c in cross.columns}
    if len(factors) == 1 and not any(", " in c for c in cross.columns):
        return [f"{column_name(metric)} by {factors.pop()}", *(c.split("=", 1)[1] for c in cross.columns)], rows
    return [column_name(metric), *cross.columns], rows


def cross_caption(cross: CrossComparison, brief: bool = False) -> str:
    conf = next(f"{100 * c.spec.confidence:g}" for c in cross.columns.values() if c is not None)
    b, spread, where = cross.baseline_row, "" if brief else " ± sample std", " (in cross.md)" if brief else ""
    return (f"Rows by the other factors the study varied (one column each), in %. Row {b}: its mean{spread} "
            f"[{conf}% CI, Student t] (n seeds). Other rows: Δ = the row's mean − the mean of "
            f"{b} in the same column, in percentage points, [{conf}% CI of the test]: paired t-test on the seeds "
            f"both ran (n = pairs), Welch t-test when fewer than 2 are shared (n = the row's seeds vs {b}'s); "
            f"p-values{where} Holm-corrected over each column's comparisons; completed trials only.")


def _cross_render(cross: CrossComparison, escape: Callable[[str], str],
                  table: Callable[[list[str], list[list[str]], str], str]) -> str:
    """One table per shown metric, each escaped and laid out by ``table``."""
    parts = []
    for metric in cross_metrics(cross):
        header, rows = cross_grid(cross, metric)
        parts.append(table([escape(h) for h in header], [[escape(c) for c in r] for r in rows],
                           escape(cross_caption(cross))))
    return "\n".join(parts)


def cross_markdown(cross: CrossComparison) -> str:
    return _cross_render(cross, _markdown_escape, _markdown_table)


def cross_latex(cross: CrossComparison) -> str:
    return _cross_render(cross, latex_escape, _latex_table)


def cross_html(cross: CrossComparison) -> str:
    return _cross_render(cross, html.escape, _html_table)


def cross_csv(cross: CrossComparison) -> str:
    """Long format, fractions at full precision: each column's statistics (STAT_COLUMNS) under its label."""
    return pd.concat([c.stats.assign(column=label) for label, c in cross.columns.items() if c is not None],
                     ignore_index=True).to_csv(index=False)


def write_tables(cmp: Comparison, out_dir: str | Path, paper: Optional[PaperColumn] = None,
                 cross: Optional[CrossComparison] = None) -> dict[str, Path]:
    """``comparison.md``, ``comparison.csv`` and ``comparison.tex`` in ``out_dir``; with ``cross``, also
    ``cross.md``, ``cross.csv`` and ``cross.tex``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
        paths[ext] = out / f"comparison.{ext}"
        paths[ext].write_text(render(cmp, paper), encoding="utf-8")
    if cross is not None and cross_metrics(cross):
        for ext, render_cross in (("md", cross_markdown), ("csv", cross_csv), ("tex", cross_latex)):
            paths[f"cross {ext}"] = out / f"cross.{ext}"
            paths[f"cross {ext}"].write_text(render_cross(cross), encoding="utf-8")
    return paths


# ---------------------------------------------------------------- the terminal's copy
_CI = re.compile(r"\s*\[[^\]]*\]")  # a cell's confidence interval (the files keep it)
_TEST = re.compile(r"\s+Holm\s*\([^)]*\)")  # the test's name and its n, said once in the caption
CELL_MAX = 28


def _column_width(header: str, cells: Sequence[str]) -> int:
    """The narrowest width that holds every cell and the header in at most two lines."""
    w = max([columns(c) for c in cells] + [1])
    while len(textwrap.wrap(header, w)) > 2 or any(columns(piece) > w for piece in textwrap.wrap(header, w)):
        w += 1
    return w


def _fitting_columns(widths: list[int], width: int, first: Sequence[int]) -> list[int]:
    """Indexes of the columns shown, in table order: the label and n always, then the columns of
    ``first`` and after them the others, each while it still fits."""
    shown, used = [0, 1], widths[0] + 2 + widths[1]
    for i in dict.fromkeys([*first, *range(2, len(widths))]):
        if i not in shown and used + 2 + widths[i] <= width:
            shown.append(i)
            used += 2 + widths[i]
    return sorted(shown)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """The label column left-aligned, the numbers right-aligned."""
    return "  ".join(pad(c, w, right=i > 0) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()


def _aligned(header: list[str], rows: list[list[str]], widths: list[int]) -> list[str]:
    heads = [textwrap.wrap(h, w) or [""] for h, w in zip(header, widths)]
    depth = max(len(h) for h in heads)
    heads = [[""] * (depth - len(h)) + h for h in heads]  # two-line headers end on the same line
    return ([_line([h[k] for h in heads], widths) for k in range(depth)] + [_line(["-" * w for w in widths], widths)]
            + [_line(r, widths) for r in rows])


def to_terminal(cmp: Comparison, paper: Optional[PaperColumn] = None, width: Optional[int] = WIDTH) -> str:
    """The comparison as the commands print it. ``width=None`` (``wide=true``): the Markdown table.
    Otherwise aligned columns within ``width``: groups by their short labels (the report's G1…Gn
    where names are long) with a legend of their full configs, cells without their CI and test
    details (the comparison files keep them), and the columns that do not fit named below the table."""
    if width is None:
        return to_markdown(cmp, paper)
    header, rows = grid(cmp, paper, short=True)
    for g, row in zip(cmp.groups.itertuples(), rows):
        same_n = re.compile(rf"\s*\(n={g.n}\)$")  # the n column says it
        row[2:] = [clip(same_n.sub("", _TEST.sub("", _CI.sub("", c))), CELL_MAX) for c in row[2:]]
    widths = [_column_width(h, [r[i] for r in rows]) for i, h in enumerate(header)]
    # the paper's figure, the selection metric and the Δ columns before the other metrics
    first = [*range(2, 2 + bool(paper)), header.index(column_name(cmp.spec.metric)), *range(len(header) - len(
        delta_metrics(cmp)), len(header))] if cmp.spec.metric in cmp.spec.metrics else []
    shown = _fitting_columns(widths, width, first)
    lines = _aligned([header[i] for i in shown], [[r[i] for i in shown] for r in rows], [widths[i] for i in shown])
    lines.append("")
    lines += [fill(f"{g.label} = {g.group}", width, subsequent_indent="     ")
              for g in cmp.groups.itertuples() if g.label != g.group]
    hidden = [header[i] for i in range(len(header)) if i not in shown]
    more = f"; and the columns {', '.join(hidden)}" if hidden else ""
    lines.append(fill(f"CIs and tests are in comparison.md (or print with wide=true){more}.", width))
    lines += ["", fill(caption(cmp) + (f" {paper.note}" if paper else ""), width)]
    return "\n".join(lines)


def cross_terminal(cross: CrossComparison, width: Optional[int] = WIDTH) -> str:
    """The cross tables as the commands print them: ``width=None`` (``wide=true``) the Markdown; otherwise
    aligned columns within ``width``, each cell its mean or Δ with the CI and n, the test said in the caption."""
    if width is None or not cross_metrics(cross):
        return cross_markdown(cross)
    lines = []
    for metric in cross_metrics(cross):
        header, rows = cross_grid(cross, metric, brief=True)
        lines.append(f"{header[0]}:")  # a title line, so the label column is only as wide as the row names
        header[0] = ""
        widths = [_column_width(h, [r[i] for r in rows]) for i, h in enumerate(header)]
        shown = _fitting_columns(widths, width, [])
        lines += _aligned([header[i] for i in shown], [[r[i] for i in shown] for r in rows], [widths[i] for i in shown])
        hidden = [header[i] for i in range(len(header)) if i not in shown]
        if hidden:
            lines.append(fill(f"Not shown at this width (see cross.md, or wide=true): {', '.join(hidden)}.", width))
        lines.append("")
    return "\n".join(lines + [fill(cross_caption(cross, brief=True), width)])
