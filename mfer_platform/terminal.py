"""What the commands print on a terminal: lines that fit ``WIDTH`` columns, and a trial's config in
short form.

A sweep's progress lines, its final table and ``mfer-status`` are read in terminals and CI logs,
which wrap or cut what is wider; ``wide=true`` on a command turns the limit off (``width=None``).
"""
from __future__ import annotations

import json
import textwrap
from collections import Counter
from typing import Any, Iterable, Optional

from mfer_platform.overrides import choice_text, decode_choice

WIDTH = 100
ELLIPSIS = "..."


def columns(text: str) -> int:
    """The columns ``text`` may take, counted as its UTF-8 bytes: never fewer than its characters, and
    what byte-counting tools (``awk length``, ``cut -b``) measure, so ``±``, ``Δ`` or ``★`` in a line
    cannot push it past the limit in a log read with them."""
    return len(text.encode("utf-8"))


def pad(text: str, width: int, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` columns (``columns``), on the left when ``right``."""
    space = " " * max(0, width - columns(text))
    return space + text if right else text + space


def clip(line: str, width: Optional[int] = WIDTH) -> str:
    """``line`` cut to ``width`` columns, the cut marked with an ellipsis; ``width=None``: unchanged."""
    if width is None or columns(line) <= width:
        return line
    while line and columns(line) > width - len(ELLIPSIS):
        line = line[:-1]
    return line + ELLIPSIS


def fill(text: str, width: int, **kwargs: Any) -> str:
    """``textwrap.fill`` with every line within ``width`` columns (``columns``): textwrap counts
    characters, so a paragraph with non-ASCII signs is wrapped narrower until it fits."""
    for w in range(width, max(10, width // 2), -1):
        out = textwrap.fill(text, w, **kwargs)
        if all(columns(line) <= width for line in out.splitlines()):
            return out
    return "\n".join(clip(line, width) for line in textwrap.fill(text, width // 2, **kwargs).splitlines())


def wrap_lines(text: str, width: Optional[int] = WIDTH) -> str:
    """``text`` with every line longer than ``width`` wrapped, continuing under its value (after
    ``label : ``) or its own indent: for text that must be read whole, such as a sweep's plan."""
    if width is None:
        return text
    out = []
    for line in text.splitlines():
        if columns(line) <= width:
            out.append(line)
            continue
        hang = line.index(" : ") + 3 if " : " in line[:width // 2] else len(line) - len(line.lstrip()) + 2
        out.append(fill(line, width, subsequent_indent=" " * hang, break_on_hyphens=False))
    return "\n".join(out)


def short_value(value: Any) -> str:
    """A number to 3 significant digits (``0.000543``, ``1e-05``); anything else in its one spelling
    (``overrides.choice_text``: ``[0.5,0.75,1.0]``)."""
    value = decode_choice(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return choice_text(value)


def short_keys(keys: Iterable[str]) -> dict[str, str]:
    """``model.attn_variant`` -> ``attn_variant``, unless two keys would share the short name."""
    keys = list(keys)
    last = Counter(k.rsplit(".", 1)[-1] for k in keys)
    return {k: k.rsplit(".", 1)[-1] if last[k.rsplit(".", 1)[-1]] == 1 else k for k in keys}


def short_config(config: dict) -> str:
    """A trial's searched values as ``lr=0.000543 attn_variant=ds`` (Tune's internal keys left out)."""
    keys = [k for k in config if not k.startswith("__")]
    names = short_keys(keys)
    return " ".join(f"{names[k]}={short_value(config[k])}" for k in keys)
